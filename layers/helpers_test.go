package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
)

// fakeStorePath returns a valid store path for name, with a hash made from
// name.
func fakeStorePath(name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	sum := sha256.Sum256([]byte(name))
	var h [32]byte
	for i := range h {
		h[i] = alphabet[sum[i]%32]
	}
	return "/nix/store/" + string(h[:]) + "-" + name
}

// fakeStore is a Root holding store paths made of host files.
type fakeStore struct {
	root  string
	paths map[string]string // name -> store path
}

func (s *fakeStore) path(name string) string { return s.paths[name] }

// newFakeStore makes a store below a temporary root with:
//
//	tree:   nested directories, a 0644 file, an executable, a symlink,
//	        a hard link, an empty file, an empty directory, a name longer
//	        than 100 bytes, files whose names sort around "/"
//	file:   a store path that is a single executable file
//	link:   a store path that is a symlink to tree
//	big:    ~3 MiB of host binaries (several chunks at test chunk sizes)
func newFakeStore(t testing.TB) *fakeStore {
	t.Helper()
	root := t.TempDir()
	s := &fakeStore{root: root, paths: map[string]string{}}
	mk := func(name string) string {
		sp := fakeStorePath(name)
		s.paths[name] = sp
		return filepath.Join(root, sp)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tree := mk("tree-1.0")
	must(os.MkdirAll(filepath.Join(tree, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(tree, "lib", "empty"), 0o755))
	must(os.MkdirAll(filepath.Join(tree, "a"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "a", "x"), []byte("in a/\n"), 0o644))
	must(os.WriteFile(filepath.Join(tree, "a-b"), []byte("a-b sorts before a/ by bytes, after it in NAR order\n"), 0o644))
	must(os.WriteFile(filepath.Join(tree, "bin", "tool"), hostBytes(t, "/bin/true", 0), 0o755))
	must(os.WriteFile(filepath.Join(tree, "lib", "data.txt"), []byte(strings.Repeat("nixery ", 5000)), 0o644))
	must(os.WriteFile(filepath.Join(tree, "lib", "empty.txt"), nil, 0o644))
	must(os.Link(filepath.Join(tree, "lib", "data.txt"), filepath.Join(tree, "lib", "hardlink.txt")))
	must(os.Symlink("../lib/data.txt", filepath.Join(tree, "bin", "data-link")))
	long := filepath.Join(tree, "lib", strings.Repeat("long-name-", 12)+".so")
	must(os.WriteFile(long, []byte("long name\n"), 0o644))
	file := mk("file-2.0")
	must(os.WriteFile(file, hostBytes(t, "/bin/sh", 0), 0o755))
	link := mk("link-3.0")
	must(os.Symlink(s.paths["tree-1.0"], link))
	big := mk("big-4.0")
	must(os.MkdirAll(filepath.Join(big, "bin"), 0o755))
	n := 0
	entries, err := os.ReadDir("/usr/bin")
	must(err)
	for _, e := range entries {
		if n > 3<<20 || !e.Type().IsRegular() {
			continue
		}
		b := hostBytes(t, filepath.Join("/usr/bin", e.Name()), 1<<20)
		must(os.WriteFile(filepath.Join(big, "bin", e.Name()), b, 0o755))
		n += len(b)
	}
	for _, d := range []string{tree, big} {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if e.IsDir() {
				os.Chmod(p, 0o555)
			}
			return nil
		})
	}
	t.Cleanup(func() {
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return s
}

// hostBytes reads a host file, at most max bytes if max > 0.
func hostBytes(t testing.TB, name string, max int) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if max > 0 && len(b) > max {
		b = b[:max]
	}
	return b
}

func (s *fakeStore) all() []string {
	var out []string
	for _, p := range s.paths {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// newTestAssembler returns an Assembler with a fresh blob store and cache
// in temporary directories.
func newTestAssembler(t testing.TB, root string, opts Options) (*Assembler, *FSStore) {
	t.Helper()
	store, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Root = root
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	}
	a, err := NewAssembler(store, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return a, store
}

// testLog sends log lines to t.Log, shown for failed tests and with -v.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// readBlob returns the bytes of a blob.
func readBlob(t testing.TB, s BlobStore, h v1.Hash) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gunzip decompresses a (multi-member) gzip stream with Go's reader.
func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tarEntry is one entry of a layer, with its contents.
type tarEntry struct {
	hdr  *tar.Header
	body []byte
}

func readTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h, body})
	}
}

// expectEntries walks store paths below root the way a layer must list them
// and describes each entry as a line: type, name, mode, and the sha256 of a
// file or the target of a symlink.
func expectEntries(t testing.TB, root string, paths []string) []string {
	t.Helper()
	out := []string{"dir nix/ 755", "dir nix/store/ 755"}
	var walk func(fsPath, name string)
	walk = func(fsPath, name string) {
		fi, err := os.Lstat(fsPath)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fi.IsDir():
			out = append(out, fmt.Sprintf("dir %s/ 555", name))
			es, err := os.ReadDir(fsPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				walk(filepath.Join(fsPath, e.Name()), name+"/"+e.Name())
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(fsPath)
			out = append(out, fmt.Sprintf("symlink %s 777 -> %s", name, target))
		default:
			mode := "444"
			if fi.Mode()&0o111 != 0 {
				mode = "555"
			}
			b, err := os.ReadFile(fsPath)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("file %s %s %x", name, mode, sha256.Sum256(b)))
		}
	}
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	for _, p := range sorted {
		walk(filepath.Join(root, p), p[1:])
	}
	return out
}

// describeTar describes tar entries like expectEntries, checking the fixed
// fields of every header.
func describeTar(t testing.TB, entries []tarEntry) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, e := range entries {
		h := e.hdr
		if seen[h.Name] {
			t.Errorf("duplicate entry %s", h.Name)
		}
		seen[h.Name] = true
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d/%d %q/%q, want 0/0 and no names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, Epoch)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			out = append(out, fmt.Sprintf("dir %s %o", h.Name, h.Mode))
		case tar.TypeSymlink:
			out = append(out, fmt.Sprintf("symlink %s %o -> %s", h.Name, h.Mode, h.Linkname))
		case tar.TypeReg:
			out = append(out, fmt.Sprintf("file %s %o %x", h.Name, h.Mode, sha256.Sum256(e.body)))
		default:
			t.Errorf("%s: type %c", h.Name, h.Typeflag)
		}
	}
	return out
}
