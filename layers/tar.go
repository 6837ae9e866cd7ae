package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Epoch is the modification time of every entry in a layer:
// 1970-01-01T00:00:01Z, the time Nix gives every store file (one second
// after the epoch, because some tools treat 0 as "unknown").
var Epoch = time.Unix(1, 0).UTC()

// Modes of layer entries. The Nix store records only whether a file is
// executable, so a layer does the same: whatever the host's permission bits
// (a fake store made of host files may carry 0644 or setuid bits), regular
// files are 0444 or 0555, directories 0555, symlinks 0777. The parents of the
// store, nix/ and nix/store/, are 0755.
const (
	modeFile       = 0o444
	modeExecutable = 0o555
	modeDir        = 0o555
	modeSymlink    = 0o777
	modeStoreDir   = 0o755
)

// tarBlock is the size of a tar block. Every entry (header and padded
// contents) is a whole number of blocks, so entries can be concatenated and
// cut anywhere.
const tarBlock = 512

// storeHeaderTar is the start of every layer's tar: the nix/ and nix/store/
// directory entries. storeTrailerTar is its end: two zero blocks.
var (
	storeHeaderTar  = mustHeaderBytes(dirHeader("nix/", modeStoreDir), dirHeader("nix/store/", modeStoreDir))
	storeTrailerTar = make([]byte, 2*tarBlock)
)

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: Epoch, Format: tar.FormatPAX}
}

func mustHeaderBytes(hdrs ...*tar.Header) []byte {
	var b []byte
	for _, h := range hdrs {
		hb, err := headerBytes(h)
		if err != nil {
			panic(err)
		}
		b = append(b, hb...)
	}
	return b
}

// headerBytes encodes hdr as tar header blocks (with a PAX extended header
// first when a name or link target does not fit USTAR). The format is
// explicit: USTAR where it suffices, PAX otherwise, with no access or change
// times, so the bytes depend only on hdr.
func headerBytes(hdr *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	// The header blocks are written; the contents, if any, are the
	// caller's, so tw is dropped without Close.
	return buf.Bytes(), nil
}

// segmentWriter receives the tar bytes of one store path. It is implemented
// by [chunker].
type segmentWriter interface {
	io.Writer
	// readFull copies exactly n bytes from r.
	readFull(r io.Reader, n int64) error
}

// writeSegment writes the tar entries of one store path, a path such as
// /nix/store/<hash>-<name>, read from the filesystem below root. Entries come
// in NAR order: a directory, then its children sorted by name bytes, each
// child's subtree complete before the next child.
func writeSegment(ctx context.Context, root, storePath string, w segmentWriter) error {
	fsPath := filepath.Join(root, filepath.FromSlash(storePath))
	name := storePath[1:] // nix/store/<hash>-<name>
	return writeTree(ctx, fsPath, name, w)
}

func writeTree(ctx context.Context, fsPath, name string, w segmentWriter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Lstat(fsPath)
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	hdr := &tar.Header{Name: name, ModTime: Epoch, Format: tar.FormatPAX}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", modeDir
		if err := writeHeader(w, hdr); err != nil {
			return err
		}
		entries, err := os.ReadDir(fsPath) // sorted by name
		if err != nil {
			return fmt.Errorf("layers: %w", err)
		}
		for _, e := range entries {
			if err := writeTree(ctx, filepath.Join(fsPath, e.Name()), name+"/"+e.Name(), w); err != nil {
				return err
			}
		}
		return nil
	case mode.IsRegular():
		// A hard link (from nix-store --optimise) is just another
		// regular file here: each name gets its own copy.
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, fi.Size(), modeFile
		if mode&0o111 != 0 {
			hdr.Mode = modeExecutable
		}
		f, err := os.Open(fsPath)
		if err != nil {
			return fmt.Errorf("layers: %w", err)
		}
		defer f.Close()
		if err := writeHeader(w, hdr); err != nil {
			return err
		}
		if err := w.readFull(f, fi.Size()); err != nil {
			return fmt.Errorf("layers: %s: %w", fsPath, err)
		}
		if pad := (tarBlock - fi.Size()%tarBlock) % tarBlock; pad > 0 {
			var zero [tarBlock]byte
			if _, err := w.Write(zero[:pad]); err != nil {
				return err
			}
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(fsPath)
		if err != nil {
			return fmt.Errorf("layers: %w", err)
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, modeSymlink
		return writeHeader(w, hdr)
	default:
		return fmt.Errorf("layers: %s: unsupported file type %v (a Nix store holds only files, directories and symlinks)", fsPath, mode.Type())
	}
}

func writeHeader(w io.Writer, hdr *tar.Header) error {
	b, err := headerBytes(hdr)
	if err != nil {
		return fmt.Errorf("layers: tar header for %s: %w", hdr.Name, err)
	}
	_, err = w.Write(b)
	return err
}
