// Package objstore holds what the object-store backends of package layers
// (layers/s3store, layers/gcsstore) share, so that each is only its
// store's API:
//
//   - [Spool], a blob being written: hashed as it comes, held in memory
//     while it fits in one part (one request uploads it), then spooled to
//     an unlinked local file, so that a killed server leaves nothing
//     behind and nothing reaches the store before the digest is known;
//   - [Reader], a stored blob read by ranged GETs, opened lazily and again
//     after a Seek, so that net/http can serve Range requests from it.
//   - [Layout], the names of a bucket's objects (blobs, quarantine,
//     records, shared state), checked on the way in and parsed on the way
//     out.
package objstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

// Spool receives a new blob's bytes for a backend's [layers.BlobWriter].
type Spool struct {
	pkg  string // the backend, for errors
	dir  string // of the spool file; "" is os.TempDir
	part int
	tee  io.Writer // gets every byte too, or nil

	h   hash.Hash
	n   int64
	buf []byte // the blob while it fits in one part

	f    *os.File // the spool, once it does not (unlinked: a kill frees it)
	fw   *bufio.Writer
	err  error // first failure, sticky
	done bool
}

// NewSpool returns a Spool holding up to part bytes in memory and the rest
// in a file in dir. pkg names the backend in errors. tee, if not nil, is
// written every byte too, in order (the backend's checksums).
func NewSpool(pkg, dir string, part int, tee io.Writer) *Spool {
	return &Spool{pkg: pkg, dir: dir, part: part, tee: tee, h: sha256.New()}
}

// Digest returns the sha256 digest of the bytes written so far
// ([layers.Digester]).
func (s *Spool) Digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s.h.Sum(nil))}
}

// Size returns the number of bytes written.
func (s *Spool) Size() int64 { return s.n }

func (s *Spool) Write(p []byte) (int, error) {
	if s.done {
		return 0, fmt.Errorf("%s: write to a finished blob", s.pkg)
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.f == nil && len(s.buf)+len(p) <= s.part {
		if s.buf == nil {
			s.buf = make([]byte, 0, min(max(len(p), 64<<10), s.part))
		}
		s.buf = append(s.buf, p...)
	} else {
		if s.f == nil {
			if err := s.spill(); err != nil {
				return 0, err
			}
		}
		if _, err := s.fw.Write(p); err != nil {
			s.err = fmt.Errorf("%s: spool: %w", s.pkg, err)
			return 0, s.err
		}
	}
	s.h.Write(p)
	if s.tee != nil {
		s.tee.Write(p)
	}
	s.n += int64(len(p))
	return len(p), nil
}

// spill moves the blob from memory to a spool file.
func (s *Spool) spill() error {
	f, err := os.CreateTemp(s.dir, "nixery-"+s.pkg+"-upload-")
	if err == nil {
		// Unlinked at once: the space comes back when the file is
		// closed, or when the process dies.
		err = os.Remove(f.Name())
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		s.err = fmt.Errorf("%s: spool a blob larger than one part: %w", s.pkg, err)
		return s.err
	}
	s.f, s.fw = f, bufio.NewWriterSize(f, 1<<20)
	if _, err := s.fw.Write(s.buf); err != nil {
		s.err = fmt.Errorf("%s: spool: %w", s.pkg, err)
		return s.err
	}
	s.buf = nil
	return nil
}

// Finish checks that the bytes written hash to h and returns them: in
// memory (buf, f nil) when they fit in one part, else in the spool file f
// (the caller reads it with ReadAt, Size bytes). It fails after a write
// failed, on another digest (an error wrapping [layers.ErrDigestMismatch])
// and after Close. Close releases what it returns.
func (s *Spool) Finish(h v1.Hash) (buf []byte, f *os.File, err error) {
	if s.done {
		return nil, nil, fmt.Errorf("%s: commit of a finished blob", s.pkg)
	}
	if s.err != nil {
		return nil, nil, s.err
	}
	if got := s.Digest(); got != h {
		return nil, nil, fmt.Errorf("%w: wrote %s, want %s", layers.ErrDigestMismatch, got, h)
	}
	if s.f == nil {
		return s.buf, nil, nil
	}
	if err := s.fw.Flush(); err != nil {
		return nil, nil, fmt.Errorf("%s: spool: %w", s.pkg, err)
	}
	return nil, s.f, nil
}

// Close discards what was written and frees the spool file. It is
// idempotent.
func (s *Spool) Close() error {
	if s.done {
		return nil
	}
	s.done, s.buf = true, nil
	if s.f != nil {
		s.f.Close()
		s.f, s.fw = nil, nil
	}
	return nil
}

// Done reports whether Close was called.
func (s *Spool) Done() bool { return s.done }

// Reader reads a stored object by ranged GETs: Open is called with the
// offset to read from, at the first Read and at the first Read after a
// Seek that moved. It is a [layers.Versioned] io.ReadSeekCloser with a
// Stat, as the filesystem store's files are.
type Reader struct {
	// Ctx is the context of every Open.
	Ctx context.Context
	// Open returns the object's bytes from off to its end.
	Open func(ctx context.Context, off int64) (io.ReadCloser, error)
	// Pkg names the backend and Key the object, in errors.
	Pkg, Key string
	// Name, Size and ModTime are what Stat reports; Ver what Version
	// does (an ETag, a generation).
	Name    string
	Size    int64
	ModTime time.Time
	Ver     string

	off  int64
	body io.ReadCloser // positioned at off, or nil
}

var _ layers.Versioned = (*Reader)(nil)

func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.Size {
		return 0, io.EOF
	}
	if r.body == nil {
		body, err := r.Open(r.Ctx, r.off)
		if err != nil {
			return 0, fmt.Errorf("%s: read %s: %w", r.Pkg, r.Key, err)
		}
		r.body = body
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	if err == io.EOF && r.off < r.Size {
		err = fmt.Errorf("%s: read %s: %w after %d of %d bytes", r.Pkg, r.Key, io.ErrUnexpectedEOF, r.off, r.Size)
	}
	if err == io.EOF || r.off >= r.Size {
		r.body.Close()
		r.body = nil
		if err == nil && r.off >= r.Size {
			err = io.EOF
		}
	}
	return n, err
}

func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.Size + offset
	default:
		return 0, fmt.Errorf("%s: seek: bad whence", r.Pkg)
	}
	if abs < 0 {
		return 0, errors.New(r.Pkg + ": seek before the start")
	}
	if abs != r.off && r.body != nil {
		r.body.Close()
		r.body = nil
	}
	r.off = abs
	return abs, nil
}

func (r *Reader) Close() error {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	return nil
}

// Stat describes the object as a regular file.
func (r *Reader) Stat() (fs.FileInfo, error) { return objectInfo{r}, nil }

// Version returns Ver.
func (r *Reader) Version() string { return r.Ver }

type objectInfo struct{ r *Reader }

func (i objectInfo) Name() string       { return i.r.Name }
func (i objectInfo) Size() int64        { return i.r.Size }
func (i objectInfo) Mode() fs.FileMode  { return 0o444 }
func (i objectInfo) ModTime() time.Time { return i.r.ModTime }
func (i objectInfo) IsDir() bool        { return false }
func (i objectInfo) Sys() any           { return nil }

// CheckStateName checks the name of a shared state object as the
// backends' images.StateStore takes them: segments of letters, digits,
// '.', '_' and '-', separated by '/', none empty, "." or "..", 512 bytes at
// most; so that a name never escapes the store's state/ prefix. pkg names
// the backend in the error.
func CheckStateName(pkg, name string) error {
	if name == "" || len(name) > 512 {
		return fmt.Errorf("%s: bad state name %q", pkg, name)
	}
	for _, seg := range strings.Split(name, "/") {
		ok := seg != "" && seg != "." && seg != ".."
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				ok = false
			}
		}
		if !ok {
			return fmt.Errorf("%s: bad state name %q", pkg, name)
		}
	}
	return nil
}
