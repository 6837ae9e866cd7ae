package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/layers"
)

var storePath = fakenix.StorePath

func newStore(t testing.TB) *layers.FSStore {
	t.Helper()
	s, err := layers.NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// tarEntries lists a layer's entries: files map to their contents,
// symlinks to "-> target", directories to their mode. Every entry must have
// owner 0 and the fixed time.
func tarEntries(t testing.TB, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range testutil.ReadTar(t, r) {
		h := e.Header
		name := strings.TrimSuffix(h.Name, "/")
		if _, dup := out[name]; dup {
			t.Errorf("duplicate entry %s", name)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[name] = "-> " + h.Linkname
		case tar.TypeDir:
			out[name] = fmt.Sprintf("dir %o", h.Mode)
		default:
			out[name] = string(e.Body)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(Created) {
			t.Errorf("%s: uid %d gid %d mtime %v", name, h.Uid, h.Gid, h.ModTime)
		}
	}
	return out
}

// fixture is a Builder over the fake Nix and layer builder, with at most
// six layers per image (five of store paths and the customisation layer).
type fixture struct {
	b     *Builder
	nix   *fakenix.Nix
	lay   *fakenix.Layers
	store *layers.FSStore // nil when the fixture has another store
	fs    fstest.MapFS    // the store paths the customisation layer reads
	logs  *testutil.SyncBuffer
	dir   string
}

// newFixture returns a fixture; store and dir may be shared with an
// earlier fixture (a restart), or nil and "" for new ones.
func newFixture(t testing.TB, nx *fakenix.Nix, store *layers.FSStore, dir string) *fixture {
	t.Helper()
	return newFixtureTTL(t, nx, store, dir, 0)
}

// newFixtureTTL is newFixture with a Config.NegativeTTL.
func newFixtureTTL(t testing.TB, nx *fakenix.Nix, store *layers.FSStore, dir string, negativeTTL time.Duration) *fixture {
	t.Helper()
	if store == nil {
		store = newStore(t)
	}
	f := newFixtureWith(t, nx, store, dir, func(c *Config) { c.NegativeTTL = negativeTTL })
	f.store = store
	return f
}

// newFixtureWith returns a fixture over any store, with the configuration
// changed by mod (if not nil).
func newFixtureWith(t testing.TB, nx *fakenix.Nix, store layers.BlobStore, dir string, mod func(*Config)) *fixture {
	t.Helper()
	if nx == nil {
		nx = &fakenix.Nix{}
	}
	f := &fixture{nix: nx, logs: &testutil.SyncBuffer{}, dir: dir, lay: &fakenix.Layers{Store: store}, fs: fakenix.StoreFS()}
	cfg := Config{
		Nix:       nx,
		Layers:    f.lay,
		Store:     store,
		IndexDir:  dir,
		StoreFS:   f.fs,
		MaxLayers: 6,
		Logger:    slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ScrubRate: -1, // tests scrub when they mean to
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	f.b = b
	return f
}

// checkBody reads rc to its end, closes it, and fails the test unless the
// bytes hash to h.
func checkBody(t testing.TB, rc io.ReadCloser, h v1.Hash) {
	t.Helper()
	defer rc.Close()
	got, n, err := v1.SHA256(rc)
	if err != nil || got != h {
		t.Errorf("blob %s: %d bytes hash to %s (%v)", h, n, got, err)
	}
}
