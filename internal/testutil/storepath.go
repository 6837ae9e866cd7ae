package testutil

import (
	"crypto/sha256"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
)

// StoreDir is the Nix store the fakes name their paths in.
const StoreDir = "/nix/store"

// nixBase32 is the alphabet of store path hashes: Nix's base32 has no e, o,
// u or t.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// StorePath returns a valid store path for name, /nix/store/<hash>-<name>,
// with a 32-character hash derived from name alone: the same name gives the
// same path in every test and on every machine, and different names give
// different hashes.
func StorePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	var h [32]byte
	for i := range h {
		h[i] = nixBase32[sum[i]%32]
	}
	return StoreDir + "/" + string(h[:]) + "-" + name
}

// StoreFS returns an in-memory store: for each name in pkgs, the files of
// pkgs[name] below the store path StorePath(name), with StoreDir's leading
// slash dropped (fs.FS names are relative), so that
//
//	StoreFS(map[string]fstest.MapFS{"hello": {"bin/hello": {Data: []byte("hi"), Mode: 0o555}}})
//
// holds nix/store/<hash>-hello/bin/hello.
func StoreFS(pkgs map[string]fstest.MapFS) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, files := range pkgs {
		dir := strings.TrimPrefix(StorePath(name), "/")
		for p, f := range files {
			fsys[path.Join(dir, p)] = f
		}
	}
	return fsys
}

// StoreTree is a fake Nix store on disk: store paths below Root, as
// layers.Options.Root expects them (Root + "/nix/store/<hash>-<name>").
type StoreTree struct {
	Root  string
	paths map[string]string // name -> store path
}

// NewStoreTree returns an empty store below a temporary directory of t. At
// cleanup it makes every directory writable again, so that the test can
// remove a tree that [StoreTree.Seal] made read-only.
func NewStoreTree(t testing.TB) *StoreTree {
	t.Helper()
	s := &StoreTree{Root: t.TempDir(), paths: map[string]string{}}
	t.Cleanup(func() {
		filepath.WalkDir(s.Root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return s
}

// Add writes the store path of name as a directory holding files: a
// regular file with its Data and permission bits (0o444 when none are
// given), a directory for fs.ModeDir, a symlink to Data for
// fs.ModeSymlink. Parent directories are made as needed. It returns the
// store path.
func (s *StoreTree) Add(t testing.TB, name string, files fstest.MapFS) string {
	t.Helper()
	sp := s.mkPath(t, name)
	dir := s.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names) // parents before children
	for _, p := range names {
		if err := writeEntry(filepath.Join(dir, filepath.FromSlash(p)), files[p]); err != nil {
			t.Fatal(err)
		}
	}
	return sp
}

// AddFile writes the store path of name as a single regular file, as Nix
// stores a lone script or binary, and returns the store path.
func (s *StoreTree) AddFile(t testing.TB, name string, data []byte, perm fs.FileMode) string {
	t.Helper()
	sp := s.mkPath(t, name)
	if err := writeEntry(s.Dir(name), &fstest.MapFile{Data: data, Mode: perm}); err != nil {
		t.Fatal(err)
	}
	return sp
}

// AddSymlink writes the store path of name as a symlink to target and
// returns the store path.
func (s *StoreTree) AddSymlink(t testing.TB, name, target string) string {
	t.Helper()
	sp := s.mkPath(t, name)
	if err := writeEntry(s.Dir(name), &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink}); err != nil {
		t.Fatal(err)
	}
	return sp
}

func (s *StoreTree) mkPath(t testing.TB, name string) string {
	t.Helper()
	if _, dup := s.paths[name]; dup {
		t.Fatalf("testutil: store path %s added twice", name)
	}
	if err := os.MkdirAll(filepath.Join(s.Root, StoreDir), 0o755); err != nil {
		t.Fatal(err)
	}
	sp := StorePath(name)
	s.paths[name] = sp
	return sp
}

func writeEntry(p string, f *fstest.MapFile) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	switch {
	case f.Mode&fs.ModeDir != 0:
		return os.MkdirAll(p, 0o755)
	case f.Mode&fs.ModeSymlink != 0:
		return os.Symlink(string(f.Data), p)
	}
	perm := f.Mode.Perm()
	if perm == 0 {
		perm = 0o444
	}
	if err := os.WriteFile(p, f.Data, perm); err != nil {
		return err
	}
	return os.Chmod(p, perm) // WriteFile's mode is subject to the umask
}

// Path returns the store path of name, "" when it was not added.
func (s *StoreTree) Path(name string) string { return s.paths[name] }

// Dir returns where the store path of name is on disk.
func (s *StoreTree) Dir(name string) string {
	return filepath.Join(s.Root, filepath.FromSlash(StorePath(name)))
}

// All returns every store path added, sorted.
func (s *StoreTree) All() []string {
	out := make([]string, 0, len(s.paths))
	for _, p := range s.paths {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Seal makes the directories of every store path read-only (0555), as
// they are in a real store.
func (s *StoreTree) Seal(t testing.TB) {
	t.Helper()
	for name := range s.paths {
		err := filepath.WalkDir(s.Dir(name), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				return os.Chmod(p, 0o555)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
