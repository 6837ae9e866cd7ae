package speed

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
)

// Sources are the host directories HostStore takes files from, in order of
// preference.
var Sources = []string{
	"/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib/jvm", "/usr/local/go",
	"/usr/lib", "/usr/libexec", "/usr/sbin", "/usr/share", "/opt",
}

// Store is a fake Nix store: directories below Root/nix/store named like
// store paths, holding copies (hard links where possible) of host files.
type Store struct {
	Root  string   // for layers.Options.Root
	Paths []string // store paths, sorted
	Bytes int64    // bytes of regular files
	// Sizes are the bytes of regular files of each store path, in the
	// order of Paths.
	Sizes []int64
}

// ClosurePaths returns the store's paths with their file bytes as NAR
// sizes, for [AssemblyOptions.Paths]. The NAR of a path is a little larger
// than its files; every contender of [Assembly] is measured against the
// same figure.
func (s *Store) ClosurePaths() []closure.Path {
	out := make([]closure.Path, len(s.Paths))
	for i, p := range s.Paths {
		out[i] = closure.Path{Path: p, NarSize: s.Sizes[i]}
	}
	return out
}

// maxLoose is the most bytes of loose files of one source directory put in
// one store path.
const maxLoose = 32 << 20

// group is a would-be store path: host files below one directory.
type group struct {
	name  string
	src   string   // directory
	files []string // relative to src; nil means the whole directory
	bytes int64
}

// HostStore returns a fake store holding at least minBytes of host files, for
// measuring assembly without a corpus (BenchmarkAssembly). The store is made
// once under os.TempDir()/nixery-speed-host-<key>, where key hashes the
// chosen files' names and sizes, and reused by later calls and processes.
//
// Every subdirectory of a source directory becomes a store path; the source's
// loose files are grouped into store paths of at most 32 MiB. Store paths
// are taken in an order that mixes the sources (by a hash of their names),
// skipping any that would take the total more than 1/8 over minBytes, until
// minBytes is reached, so a closure holds large and small paths alike, like
// a real one.
func HostStore(minBytes int64) (*Store, error) {
	var groups []group
	for _, src := range Sources {
		gs, err := groupsOf(src)
		if err != nil {
			continue
		}
		groups = append(groups, gs...)
	}
	sort.Slice(groups, func(i, j int) bool {
		hi, hj := sha256.Sum256([]byte(groups[i].name)), sha256.Sum256([]byte(groups[j].name))
		return string(hi[:]) < string(hj[:])
	})
	var chosen []group
	var total int64
	key := sha256.New()
	fmt.Fprintln(key, "speed-hoststore/v1", minBytes)
	for _, g := range groups {
		if total >= minBytes {
			break
		}
		if g.bytes == 0 || total+g.bytes > minBytes+minBytes/8 {
			continue // empty, or would overshoot by more than 1/8
		}
		chosen = append(chosen, g)
		total += g.bytes
		fmt.Fprintln(key, g.name, g.bytes, len(g.files))
	}
	if total < minBytes {
		return nil, fmt.Errorf("speed: the host has only %d bytes of files in %v, want %d", total, Sources, minBytes)
	}
	root := filepath.Join(os.TempDir(), fmt.Sprintf("nixery-speed-host-%x", key.Sum(nil)[:8]))
	sort.Slice(chosen, func(i, j int) bool { return testutil.StorePath(chosen[i].name) < testutil.StorePath(chosen[j].name) })
	st := &Store{Root: root}
	for _, g := range chosen {
		st.Paths = append(st.Paths, testutil.StorePath(g.name))
	}
	if b, err := os.ReadFile(filepath.Join(root, "complete")); err == nil {
		var done Store
		if json.Unmarshal(b, &done) == nil && slices.Equal(done.Paths, st.Paths) && len(done.Sizes) == len(done.Paths) {
			return &done, nil
		}
	}
	os.RemoveAll(root)
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	for _, g := range chosen {
		n, err := copyGroup(g, filepath.Join(tmp, testutil.StorePath(g.name)))
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		st.Sizes = append(st.Sizes, n)
		st.Bytes += n
	}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(tmp, "complete"), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, root); err != nil {
		return nil, err
	}
	return st, nil
}

// groupsOf lists the would-be store paths of one source directory.
func groupsOf(src string) ([]group, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	base := strings.ReplaceAll(strings.Trim(src, "/"), "/", "-")
	var gs []group
	loose := group{name: fmt.Sprintf("%s-files-0", base), src: src, files: []string{}}
	for _, e := range entries {
		switch {
		case e.IsDir():
			n := du(filepath.Join(src, e.Name()))
			gs = append(gs, group{name: sanitize(base + "-" + e.Name()), src: filepath.Join(src, e.Name()), bytes: n})
		case e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0:
			fi, err := e.Info()
			if err != nil {
				continue
			}
			size := int64(0)
			if fi.Mode().IsRegular() {
				size = fi.Size()
			}
			if loose.bytes+size > maxLoose && len(loose.files) > 0 {
				gs = append(gs, loose)
				loose = group{name: fmt.Sprintf("%s-files-%d", base, len(gs)), src: src, files: []string{}}
			}
			loose.files = append(loose.files, e.Name())
			loose.bytes += size
		}
	}
	if len(loose.files) > 0 {
		gs = append(gs, loose)
	}
	return gs, nil
}

// du returns the bytes of regular files below dir.
func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+-._?=", r) {
			return r
		}
		return '_'
	}, s)
}

// copyGroup copies a group's files to dst, keeping symlinks and hard-linking
// regular files when it can (the layer reads them either way).
func copyGroup(g group, dst string) (int64, error) {
	var n int64
	copyOne := func(src, dst string, d fs.DirEntry) error {
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
			if os.Link(src, dst) == nil {
				return nil
			}
			return copyFile(src, dst, fi.Mode())
		}
		return nil // sockets, devices: not in a Nix store
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	if g.files != nil {
		for _, f := range g.files {
			fi, err := os.Lstat(filepath.Join(g.src, f))
			if err != nil {
				continue
			}
			if err := copyOne(filepath.Join(g.src, f), filepath.Join(dst, f), fs.FileInfoToDirEntry(fi)); err != nil {
				return n, err
			}
		}
		return n, nil
	}
	err := filepath.WalkDir(g.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip
		}
		rel, _ := filepath.Rel(g.src, p)
		return copyOne(p, filepath.Join(dst, rel), d)
	})
	return n, err
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return nil // unreadable: skip
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm()|0o200)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
