package layers

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// newFakeStore makes a store below a temporary root with:
//
//	tree:   nested directories, a 0644 file, an executable, a symlink,
//	        a hard link, an empty file, an empty directory, a name longer
//	        than 100 bytes, files whose names sort around "/"
//	file:   a store path that is a single executable file
//	link:   a store path that is a symlink to tree
//	big:    ~3 MiB of host binaries (several chunks at test chunk sizes)
func newFakeStore(t testing.TB) *testutil.StoreTree {
	t.Helper()
	s := testutil.NewStoreTree(t)
	tree := s.Add(t, "tree-1.0", fstest.MapFS{
		"a/x":           {Data: []byte("in a/\n"), Mode: 0o644},
		"a-b":           {Data: []byte("a-b sorts before a/ by bytes, after it in NAR order\n"), Mode: 0o644},
		"bin/tool":      {Data: hostBytes(t, "/bin/true", 0), Mode: 0o755},
		"bin/data-link": {Data: []byte("../lib/data.txt"), Mode: fs.ModeSymlink},
		"lib/data.txt":  {Data: []byte(strings.Repeat("nixery ", 5000)), Mode: 0o644},
		"lib/empty":     {Mode: fs.ModeDir},
		"lib/empty.txt": {Mode: 0o644},
		"lib/" + strings.Repeat("long-name-", 12) + ".so": {Data: []byte("long name\n"), Mode: 0o644},
	})
	lib := filepath.Join(s.Dir("tree-1.0"), "lib")
	if err := os.Link(filepath.Join(lib, "data.txt"), filepath.Join(lib, "hardlink.txt")); err != nil {
		t.Fatal(err)
	}
	s.AddFile(t, "file-2.0", hostBytes(t, "/bin/sh", 0), 0o755)
	s.AddSymlink(t, "link-3.0", tree)
	big := fstest.MapFS{}
	entries, err := os.ReadDir("/usr/bin")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if n > 3<<20 || !e.Type().IsRegular() {
			continue
		}
		b := hostBytes(t, filepath.Join("/usr/bin", e.Name()), 1<<20)
		big["bin/"+e.Name()] = &fstest.MapFile{Data: b, Mode: 0o755}
		n += len(b)
	}
	s.Add(t, "big-4.0", big)
	s.Seal(t)
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
	return testutil.ReadBlob(t, s, h)
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
func describeTar(t testing.TB, entries []testutil.TarEntry) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, e := range entries {
		h := e.Header
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
			out = append(out, fmt.Sprintf("file %s %o %x", h.Name, h.Mode, sha256.Sum256(e.Body)))
		default:
			t.Errorf("%s: type %c", h.Name, h.Typeflag)
		}
	}
	return out
}
