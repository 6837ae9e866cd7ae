package nix

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

//go:embed pkgs
var bundledFiles embed.FS

// BundledFS returns the files of the bundled package set (default.nix,
// builder.sh): the directory nix/pkgs of the source tree.
func BundledFS() fs.FS {
	sub, err := fs.Sub(bundledFiles, "pkgs")
	if err != nil {
		panic(err) // the directory is embedded at compile time
	}
	return sub
}

// bundledEntry is one file of the bundled set.
type bundledEntry struct {
	name string
	data []byte
}

// bundled returns the bundled set's files, sorted by name, and the hex
// SHA-256 over their names and contents.
var bundled = sync.OnceValues(func() ([]bundledEntry, string) {
	var entries []bundledEntry
	err := fs.WalkDir(BundledFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(BundledFS(), p)
		entries = append(entries, bundledEntry{p, data})
		return err
	})
	if err != nil {
		panic(err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s\x00%d\x00", e.name, len(e.data))
		h.Write(e.data)
	}
	return entries, hex.EncodeToString(h.Sum(nil))
})

// BundledSystems are the systems the bundled set can build for: it copies
// the host's x86_64 Debian binaries, and the arm64 ones of Debian 12 that
// .ci/setup-arm64 unpacks (see [BundledNixConfig]).
var BundledSystems = []string{"x86_64-linux", "aarch64-linux"}

// BundledNixConfig is added to the Nix configuration of a [Builder] of the
// bundled set (unless its NixConfig is [NoNixConfig]): the set's
// aarch64-linux derivations run their builder (bash, cp, patchelf) on the
// x86_64 host, so Nix may build them there. Nothing is emulated while
// building; only running the programs needs the emulator.
const BundledNixConfig = "extra-platforms = aarch64-linux"

// BundledSource is the package set embedded in the binary (see nix/pkgs),
// the default when no other source is configured. It is extracted on first
// use into a directory named by the SHA-256 of its files, so its cache key
// is that hash and it is always pinned. It has one tag, "latest".
type BundledSource struct {
	parent string

	mu  sync.Mutex
	dir string // set once extracted
}

// NewBundledSource returns the bundled set, to be extracted under
// cacheDir; an empty cacheDir means "nixery" in [os.UserCacheDir] (or in
// the temporary directory when there is no cache directory).
func NewBundledSource(cacheDir string) (*BundledSource, error) {
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cacheDir = filepath.Join(base, "nixery")
	}
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("nix: bundled package set directory: %w", err)
	}
	return &BundledSource{parent: abs}, nil
}

// Hash returns the hex SHA-256 of the bundled set's files.
func (s *BundledSource) Hash() string {
	_, h := bundled()
	return h
}

// CacheKey returns "bundled:" and the hash of the set's files, pinned.
func (s *BundledSource) CacheKey(tag string) (string, bool, error) {
	if err := checkLatest(tag, s); err != nil {
		return "", false, err
	}
	return "bundled:" + s.Hash(), true, nil
}

// Import extracts the set if needed and returns its directory.
func (s *BundledSource) Import(tag string) (Import, error) {
	if err := checkLatest(tag, s); err != nil {
		return Import{}, err
	}
	dir, err := s.Dir()
	if err != nil {
		return Import{}, err
	}
	return Import{Kind: "path", Path: dir, Systems: BundledSystems, Listable: true}, nil
}

// Dir extracts the set if needed and returns its directory,
// <cacheDir>/pkgs-<hash>. Extraction writes a temporary directory and
// renames it into place, so concurrent processes never see a partial set;
// an existing directory is checked file by file and replaced if it differs.
func (s *BundledSource) Dir() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != "" {
		return s.dir, nil
	}
	entries, hash := bundled()
	dir := filepath.Join(s.parent, "pkgs-"+hash[:32])
	if !sameFiles(dir, entries) {
		if err := extract(s.parent, dir, entries); err != nil {
			return "", fmt.Errorf("nix: extracting the bundled package set: %w", err)
		}
	}
	s.dir = dir
	return dir, nil
}

func (s *BundledSource) String() string { return "bundled package set " + s.Hash()[:12] }

// sameFiles reports whether dir holds exactly entries.
func sameFiles(dir string, entries []bundledEntry) bool {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil || n != len(entries) {
		return false
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(e.name)))
		if err != nil || !bytes.Equal(data, e.data) {
			return false
		}
	}
	return true
}

func extract(parent, dir string, entries []bundledEntry) error {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".pkgs-tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(tmp, filepath.FromSlash(e.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, e.data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err == nil {
		return nil
	}
	// dir exists: another process extracted it, or it is stale.
	if sameFiles(dir, entries) {
		return nil
	}
	old := dir + ".old-" + filepath.Base(tmp)
	if err := os.Rename(dir, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	defer os.RemoveAll(old)
	if err := os.Rename(tmp, dir); err != nil {
		if sameFiles(dir, entries) {
			return nil
		}
		return err
	}
	return nil
}
