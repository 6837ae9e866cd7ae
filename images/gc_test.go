package images

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// The real layer builder and Nix have what collections use.
var (
	_ CacheTrimmer = (*layers.Assembler)(nil)
	_ PathDeleter  = (*nix.Builder)(nil)
)

// buildAll builds the images of names in f and returns them.
func buildAll(t *testing.T, f *fixture, names ...string) []*Image {
	t.Helper()
	var imgs []*Image
	for _, n := range names {
		img, err := f.b.Image(t.Context(), n, "latest")
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return imgs
}

// union is the bytes of the blobs of imgs, each counted once.
func union(imgs ...*Image) int64 {
	seen := map[v1.Hash]int64{}
	for _, img := range imgs {
		for h, n := range img.blobs() {
			seen[h] = n
		}
	}
	var total int64
	for _, n := range seen {
		total += n
	}
	return total
}

// has reports whether the store holds every blob of img.
func has(t *testing.T, s layers.BlobStore, img *Image) bool {
	t.Helper()
	for h := range img.blobs() {
		if _, err := s.Stat(t.Context(), h); err != nil {
			return false
		}
	}
	return true
}

func recordExists(dir string, img *Image) bool {
	_, err := os.Stat(filepath.Join(dir, img.Key+".json"))
	return err == nil
}

// TestCollectLimit: past the storage limit the least recently requested
// images are dropped, their blobs deleted at once (young as they are)
// unless a kept image has them; the kept images are served without Nix.
func TestCollectLimit(t *testing.T) {
	names := []string{"hello", "curl", "git", "nano"}
	// The same images, built elsewhere first, give the sizes.
	probe := buildAll(t, newFixture(t, nil, nil, t.TempDir()), names...)
	hello, nano := probe[0], probe[3]

	dir := t.TempDir()
	f := newFixture(t, nil, nil, dir)
	imgs := buildAll(t, f, names...)
	now := time.Now().UnixMilli()
	for i, age := range []int64{0, 3, 2, 1} { // hello, then nano, git, curl
		imgs[i].used.Store(now - age)
	}
	if err := f.b.index.lock.Do(t.Context(), f.b.index.syncTimes); err != nil {
		t.Fatal(err)
	}
	limit := union(hello, nano) + f.b.index.diskBytes()
	f.b.cfg.StorageLimit = limit
	st, err := f.b.Collect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Images != 2 || st.Blobs == 0 || st.After > limit {
		t.Errorf("collection %+v, limit %d", st, limit)
	}
	for i, keep := range []bool{true, false, false, true} {
		if recordExists(dir, imgs[i]) != keep || has(t, f.store, imgs[i]) != keep && keep {
			t.Errorf("%s: record %v, blobs %v; want kept %v", names[i], recordExists(dir, imgs[i]), has(t, f.store, imgs[i]), keep)
		}
	}
	// Nothing but the kept images' blobs is left.
	var left int64
	f.store.List(t.Context(), func(i layers.BlobInfo) error { left += i.Size; return nil })
	if left != union(imgs[0], imgs[3]) {
		t.Errorf("%d bytes of blobs left, the kept images have %d", left, union(imgs[0], imgs[3]))
	}
	runs := f.nix.Runs.Load()
	buildAll(t, f, "hello", "nano")
	if f.nix.Runs.Load() != runs {
		t.Error("a kept image ran Nix")
	}
	for _, h := range []v1.Hash{imgs[0].Layers()[0].Digest, imgs[3].Manifests()[0].Digest} {
		if err := serve(t, f.b, h); err != nil {
			t.Errorf("a kept blob: %v", err)
		}
	}
	buildAll(t, f, "git")
	if f.nix.Runs.Load() != runs+1 {
		t.Error("a dropped image did not run Nix")
	}
	if !strings.Contains(f.logs.String(), "msg=\"garbage collection\" images=2") {
		t.Errorf("no collection line:\n%s", f.logs)
	}
}

// TestCollectRetention: an image not requested within the retention is
// dropped.
func TestCollectRetention(t *testing.T) {
	dir := t.TempDir()
	f := newFixtureWith(t, nil, newStore(t), dir, func(c *Config) { c.Retention = time.Hour })
	imgs := buildAll(t, f, "hello", "curl")
	imgs[0].used.Store(time.Now().Add(-2 * time.Hour).UnixMilli())
	if st, err := f.b.Collect(t.Context()); err != nil || st.Images != 1 {
		t.Fatalf("collection %+v, %v", st, err)
	}
	if recordExists(dir, imgs[0]) || !recordExists(dir, imgs[1]) {
		t.Error("the wrong record was dropped")
	}
	if !strings.Contains(f.logs.String(), "not requested for 1h0m0s") {
		t.Errorf("log:\n%s", f.logs)
	}
}

// TestCollectGrace: a blob no image has is deleted once it is older than
// the grace period, not before.
func TestCollectGrace(t *testing.T) {
	store := newStore(t)
	f := newFixture(t, nil, store, t.TempDir())
	buildAll(t, f, "hello")
	young, _ := layers.Put(t.Context(), store, []byte("young"))
	old, _ := layers.Put(t.Context(), store, []byte("old"))
	past := time.Now().Add(-2 * DefaultGCGrace)
	file := filepath.Join(store.Dir(), "blobs", "sha256", old.Hex)
	os.Chtimes(file, past, past)
	st, err := f.b.Collect(t.Context())
	if err != nil || st.Blobs != 1 || st.Images != 0 {
		t.Fatalf("collection %+v, %v", st, err)
	}
	if _, err := store.Stat(t.Context(), young); err != nil {
		t.Errorf("a young blob was deleted: %v", err)
	}
	if _, err := store.Stat(t.Context(), old); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an old blob no image has was kept: %v", err)
	}
}

// blockingLayers blocks the n-th layer build until release is closed,
// after saying so on blocked.
type blockingLayers struct {
	LayerBuilder
	mu       sync.Mutex
	calls, n int
	blocked  chan struct{}
	release  chan struct{}
}

func (b *blockingLayers) Layer(ctx context.Context, paths []string) (layers.Descriptor, error) {
	b.mu.Lock()
	b.calls++
	block := b.calls == b.n
	b.mu.Unlock()
	if block {
		close(b.blocked)
		<-b.release
	}
	return b.LayerBuilder.Layer(ctx, paths)
}

// waitInflight waits until b has n blobs in flight: layers are built
// LayerParallelism at once, so another may still be under way when one
// blocks.
func waitInflight(t *testing.T, b *Builder, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.inflight.mu.Lock()
		k := len(b.inflight.n)
		b.inflight.mu.Unlock()
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d blobs in flight, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCollectInflight: a collection leaves alone the blobs of an image
// being assembled, however young the grace.
func TestCollectInflight(t *testing.T) {
	store := newStore(t)
	bl := &blockingLayers{n: 3, blocked: make(chan struct{}), release: make(chan struct{})}
	f := newFixtureWith(t, nil, store, t.TempDir(), func(c *Config) {
		bl.LayerBuilder = c.Layers
		c.Layers = bl
		c.GCGrace = time.Nanosecond
	})
	done := make(chan *Image)
	go func() {
		img, err := f.b.Image(context.Background(), "git", "latest")
		if err != nil {
			t.Error(err)
		}
		done <- img
	}()
	<-bl.blocked
	waitInflight(t, f.b, bl.n-1) // the layers built alongside, done
	var before int
	store.List(t.Context(), func(layers.BlobInfo) error { before++; return nil })
	if st, err := f.b.Collect(t.Context()); err != nil || st.Blobs != 0 || before == 0 {
		t.Errorf("collection during an assembly: %+v, %v (%d blobs before)", st, err, before)
	}
	close(bl.release)
	img := <-done
	if img != nil && !has(t, store, img) {
		t.Error("the image lost blobs")
	}
}

// vanishingLayers deletes every layer blob it returns, as a collection in
// another process might between the reuse of a blob and the save of the
// record that needs it.
type vanishingLayers struct {
	LayerBuilder
	store layers.BlobStore
	once  sync.Once
}

func (v *vanishingLayers) Layer(ctx context.Context, paths []string) (layers.Descriptor, error) {
	d, err := v.LayerBuilder.Layer(ctx, paths)
	if err == nil {
		v.once.Do(func() { v.store.Delete(ctx, d.Digest) })
	}
	return d, err
}

// TestKeepRebuildsVanished: a blob that disappears before the record is
// saved is rebuilt by the save's check.
func TestKeepRebuildsVanished(t *testing.T) {
	store := newStore(t)
	f := newFixtureWith(t, nil, store, t.TempDir(), func(c *Config) {
		c.Layers = &vanishingLayers{LayerBuilder: c.Layers, store: store}
	})
	img := buildAll(t, f, "curl")[0]
	if !has(t, store, img) {
		t.Error("the image lacks a blob")
	}
	if !strings.Contains(f.logs.String(), "rebuilding blobs of a new image that a collection removed") {
		t.Errorf("log:\n%s", f.logs)
	}
}

// TestCollectSharedDir: a collection in one process keeps what another
// process's records need, and a process forgets the images whose records
// another process dropped.
func TestCollectSharedDir(t *testing.T) {
	dir := t.TempDir()
	a := newFixture(t, nil, nil, dir)
	b := newFixtureWith(t, nil, a.store, dir, func(c *Config) { c.GCGrace = time.Nanosecond })
	x, y := buildAll(t, a, "hello")[0], buildAll(t, a, "curl")[0]
	if st, err := b.b.Collect(t.Context()); err != nil || st.Blobs != 0 || st.Images != 0 {
		t.Fatalf("b's collection: %+v, %v", st, err)
	}
	if b.b.index.get(x.Key) == nil || b.b.index.get(y.Key) == nil {
		t.Fatal("b did not load a's records")
	}
	a.b.index.drop(x, "test", false) // as a's collection would
	b.b.index.get(x.Key).used.Store(time.Now().Add(-time.Hour).UnixMilli())
	if _, err := b.b.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b.b.index.get(x.Key) != nil {
		t.Error("b still has the image whose record a dropped")
	}
	if !has(t, a.store, y) {
		t.Error("y lost blobs")
	}
	if !strings.Contains(b.logs.String(), "its record was removed by another process") {
		t.Errorf("log:\n%s", b.logs)
	}
	// An image in use when its record goes keeps its record.
	a.b.index.drop(y, "test", false)
	b.b.index.get(y.Key).touch()
	if _, err := b.b.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !recordExists(dir, y) || b.b.index.get(y.Key) == nil {
		t.Error("an image in use lost its record")
	}
}

// TestLastRequestedTimes: the times survive a restart; a damaged file is
// ignored and written anew.
func TestLastRequestedTimes(t *testing.T) {
	dir := t.TempDir()
	f1 := newFixture(t, nil, nil, dir)
	img := buildAll(t, f1, "hello")[0]
	when := time.Now().UnixMilli() + 100_000
	img.used.Store(when)
	f1.b.Close()
	f2 := newFixture(t, nil, f1.store, dir)
	if got := f2.b.index.get(img.Key).used.Load(); got != when {
		t.Errorf("after a restart: %d, want %d", got, when)
	}
	f2.b.Close()
	os.WriteFile(filepath.Join(dir, ".last-requested"), []byte(`{"version":1,"requested":{"../x":5}}`), 0o644)
	f3 := newFixture(t, nil, f1.store, dir)
	if got := f3.b.index.get(img.Key).used.Load(); got == when || got == 0 {
		t.Errorf("a damaged file was trusted: %d", got)
	}
	if !strings.Contains(f3.logs.String(), "ignoring a damaged last-requested file") {
		t.Errorf("log:\n%s", f3.logs)
	}
	if _, err := f3.b.Collect(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(f3.b.index.readTimes()) != 1 {
		t.Error("the times file was not written anew")
	}
}
