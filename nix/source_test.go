package nix

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const commit = "0123456789abcdef0123456789abcdef01234567"

func TestCacheKeys(t *testing.T) {
	bundled, err := NewBundledSource(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path, _ := NewPathSource("/src/nixpkgs")
	chanName, _ := NewChannelSource("nixos-unstable")
	chanCommit, _ := NewChannelSource(commit)
	chanURL, _ := NewChannelSource("https://github.com/NixOS/nixpkgs/archive/" + commit + ".tar.gz")
	chanURLBranch, _ := NewChannelSource("https://github.com/NixOS/nixpkgs/archive/nixos-24.05.tar.gz")
	chanFile, _ := NewChannelSource("file:///tmp/" + commit + ".tar.gz")
	repo, _ := NewGitSource("https://example.org/nixpkgs.git")

	for _, tc := range []struct {
		src    Source
		tag    string
		key    string
		pinned bool
	}{
		{bundled, "latest", "bundled:" + bundled.Hash(), true},
		{bundled, "", "bundled:" + bundled.Hash(), true},
		{path, "latest", "path:/src/nixpkgs", false},
		{chanName, "latest", "tarball:https://github.com/NixOS/nixpkgs/archive/nixos-unstable.tar.gz", false},
		{chanCommit, "latest", "tarball:https://github.com/NixOS/nixpkgs/archive/" + commit + ".tar.gz", true},
		{chanURL, "latest", "tarball:https://github.com/NixOS/nixpkgs/archive/" + commit + ".tar.gz", true},
		{chanURLBranch, "latest", "tarball:https://github.com/NixOS/nixpkgs/archive/nixos-24.05.tar.gz", false},
		{chanFile, "", "tarball:file:///tmp/" + commit + ".tar.gz", true},
		{repo, "latest", "git:https://example.org/nixpkgs.git@latest", false},
		{repo, "", "git:https://example.org/nixpkgs.git@latest", false},
		{repo, "release-24.05", "git:https://example.org/nixpkgs.git@release-24.05", false},
		{repo, commit, "git:https://example.org/nixpkgs.git@" + commit, true},
		{repo, strings.ToUpper(commit), "git:https://example.org/nixpkgs.git@" + strings.ToUpper(commit), false},
	} {
		key, pinned, err := tc.src.CacheKey(tc.tag)
		if err != nil || key != tc.key || pinned != tc.pinned {
			t.Errorf("%s.CacheKey(%q) = %q, %v, %v; want %q, %v", tc.src, tc.tag, key, pinned, err, tc.key, tc.pinned)
		}
	}
	if len(bundled.Hash()) != 64 {
		t.Errorf("bundled hash %q", bundled.Hash())
	}
	// A source with one version says so: other tags name no image, and
	// no caller needs to remember a wrapper.
	for _, src := range []Source{bundled, path, chanName, chanCommit} {
		for _, tag := range []string{commit, "v1.0", "main"} {
			_, _, err := src.CacheKey(tag)
			if !errors.Is(err, ErrUnknownTag) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `"latest"`) {
				t.Errorf("%s.CacheKey(%q): %v, want ErrUnknownTag", src, tag, err)
			}
			if _, err := src.Import(tag); !errors.Is(err, ErrUnknownTag) {
				t.Errorf("%s.Import(%q): %v, want ErrUnknownTag", src, tag, err)
			}
		}
	}
}

func TestInvalidTags(t *testing.T) {
	repo, _ := NewGitSource("/repo")
	for _, tag := range []string{"-x", ".x", "a b", "a/b", "a..b/c", strings.Repeat("a", 129), "ref;rm", "ü"} {
		if _, _, err := repo.CacheKey(tag); !errors.Is(err, ErrInvalidTag) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("CacheKey(%q) = %v, want ErrInvalidTag", tag, err)
		}
		if _, err := repo.Import(tag); !errors.Is(err, ErrInvalidTag) {
			t.Errorf("Import(%q) = %v, want ErrInvalidTag", tag, err)
		}
	}
}

func TestGitImport(t *testing.T) {
	repo, _ := NewGitSource("/repo")
	for tag, want := range map[string]Import{
		"latest":   {Kind: "git", URL: "/repo"},
		"":         {Kind: "git", URL: "/repo"},
		"main":     {Kind: "git", URL: "/repo", Ref: "main"},
		commit:     {Kind: "git", URL: "/repo", Rev: commit},
		"v1.2_rc3": {Kind: "git", URL: "/repo", Ref: "v1.2_rc3"},
	} {
		got, err := repo.Import(tag)
		if err != nil || got.Kind != want.Kind || got.URL != want.URL || got.Ref != want.Ref || got.Rev != want.Rev {
			t.Errorf("Import(%q) = %+v, %v; want %+v", tag, got, err, want)
		}
	}
}

func TestSourceFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	src, err := SourceFromEnv(env(nil))
	if _, ok := src.(*BundledSource); err != nil || !ok {
		t.Errorf("no configuration gave %T, %v; want *BundledSource", src, err)
	}
	src, err = SourceFromEnv(env(map[string]string{EnvPkgsPath: "/src/nixpkgs"}))
	if _, ok := src.(*PathSource); err != nil || !ok {
		t.Errorf("NIXERY_PKGS_PATH gave %T, %v", src, err)
	}
	src, err = SourceFromEnv(env(map[string]string{EnvChannel: "nixos-unstable"}))
	if _, ok := src.(*ChannelSource); err != nil || !ok {
		t.Errorf("NIXERY_CHANNEL gave %T, %v", src, err)
	}
	src, err = SourceFromEnv(env(map[string]string{EnvPkgsRepo: "https://example.org/x.git"}))
	if _, ok := src.(*GitSource); err != nil || !ok {
		t.Errorf("NIXERY_PKGS_REPO gave %T, %v", src, err)
	}
	if _, err := SourceFromEnv(env(map[string]string{EnvPkgsRepo: "x", EnvChannel: "y"})); err == nil {
		t.Error("two sources configured: no error")
	}
	for _, bad := range []string{"a b", "../../etc", "x\"y"} {
		if _, err := SourceFromEnv(env(map[string]string{EnvChannel: bad})); err == nil {
			t.Errorf("NIXERY_CHANNEL=%q accepted", bad)
		}
	}
}

func TestBundledExtraction(t *testing.T) {
	parent := t.TempDir()
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewBundledSource(parent)
			if err == nil {
				dirs[i], err = s.Dir()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("extraction %d: %q, %v (first: %q)", i, dirs[i], errs[i], dirs[0])
		}
	}
	s, _ := NewBundledSource(parent)
	if want := filepath.Join(parent, "pkgs-"+s.Hash()[:32]); dirs[0] != want {
		t.Errorf("dir = %s, want %s", dirs[0], want)
	}
	// Exactly the embedded files, and no temporary directories left over.
	err := fs.WalkDir(BundledFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		want, _ := fs.ReadFile(BundledFS(), p)
		got, err := os.ReadFile(filepath.Join(dirs[0], p))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s differs from the embedded file (%v)", p, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Errorf("parent holds %d entries, want 1", len(entries))
	}
	// A damaged copy is replaced.
	os.WriteFile(filepath.Join(dirs[0], "default.nix"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dirs[0], "extra.nix"), []byte("{}"), 0o644)
	s2, _ := NewBundledSource(parent)
	dir, err := s2.Dir()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fs.ReadFile(BundledFS(), "default.nix")
	got, _ := os.ReadFile(filepath.Join(dir, "default.nix"))
	if string(got) != string(want) {
		t.Error("damaged default.nix was not replaced")
	}
	if _, err := os.Stat(filepath.Join(dir, "extra.nix")); err == nil {
		t.Error("extra file survived re-extraction")
	}
	imp, err := s2.Import("latest")
	if err != nil || imp.Kind != "path" || imp.Path != dir || !slices.Equal(imp.Systems, BundledSystems) {
		t.Errorf("Import = %+v, %v", imp, err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "NIX_CONFIG=substituters = https://cache.example", "B=2"}, DefaultNixConfig)
	var cfg string
	for _, kv := range got {
		if v, ok := strings.CutPrefix(kv, "NIX_CONFIG="); ok {
			if cfg != "" {
				t.Fatal("NIX_CONFIG twice")
			}
			cfg = v
		}
	}
	if !strings.HasPrefix(cfg, DefaultNixConfig+"\n") || !strings.HasSuffix(cfg, "substituters = https://cache.example") {
		t.Errorf("NIX_CONFIG = %q: want the defaults first, then the environment's (which wins)", cfg)
	}
	if len(got) != 3 {
		t.Errorf("env = %q", got)
	}
	none := mergeEnv([]string{"A=1"}, "")
	if len(none) != 1 {
		t.Errorf("empty config added %q", none)
	}
}
