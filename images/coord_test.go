package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/gcsstore"
	"github.com/nixery-go/nixery/layers/objstore"
	"github.com/nixery-go/nixery/layers/s3store"
)

// The S3 store has what servers coordinate with.
var (
	_ StateStore  = (*s3store.Store)(nil)
	_ RecordStore = (*s3store.Store)(nil)
	_ StateStore  = (*gcsstore.Store)(nil)
	_ RecordStore = (*gcsstore.Store)(nil)
)

// sharedStore is a filesystem store with the records and state objects of
// a shared store in memory, and a way to age state objects.
type sharedStore struct {
	*layers.FSStore
	mu      sync.Mutex
	records map[string][]byte
	state   map[string]stateObject
}

type stateObject struct {
	data []byte
	mod  time.Time
}

func newSharedStore(t *testing.T) *sharedStore {
	return &sharedStore{FSStore: newStore(t), records: map[string][]byte{}, state: map[string]stateObject{}}
}

func (s *sharedStore) PutRecord(_ context.Context, key string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[key] = append([]byte(nil), data...)
	return nil
}

func (s *sharedStore) GetRecord(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.records[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return b, nil
}

func (s *sharedStore) ListRecords(_ context.Context, fn func(string) error) error {
	s.mu.Lock()
	var keys []string
	for k := range s.records {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *sharedStore) DeleteRecord(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, key)
	return nil
}

func (s *sharedStore) PutState(_ context.Context, name string, data []byte) error {
	if err := objstore.CheckStateName("sharedStore", name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[name] = stateObject{append([]byte(nil), data...), time.Now()}
	return nil
}

func (s *sharedStore) GetState(_ context.Context, name string) ([]byte, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.state[name]
	if !ok {
		return nil, time.Time{}, fs.ErrNotExist
	}
	return o.data, o.mod, nil
}

func (s *sharedStore) ListState(_ context.Context, prefix string, fn func(string, time.Time) error) error {
	s.mu.Lock()
	var objs []string
	mods := map[string]time.Time{}
	for k, o := range s.state {
		if strings.HasPrefix(k, prefix) {
			objs = append(objs, k)
			mods[k] = o.mod
		}
	}
	s.mu.Unlock()
	for _, k := range objs {
		if err := fn(k, mods[k]); err != nil {
			return err
		}
	}
	return nil
}

func (s *sharedStore) DeleteState(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.state, name)
	return nil
}

// age makes the state objects whose names start with prefix d older.
func (s *sharedStore) age(prefix string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, o := range s.state {
		if strings.HasPrefix(k, prefix) {
			o.mod = o.mod.Add(-d)
			s.state[k] = o
		}
	}
}

func (s *sharedStore) names(prefix string) []string {
	var ns []string
	s.ListState(context.Background(), prefix, func(n string, _ time.Time) error { ns = append(ns, n); return nil })
	return ns
}

// holdsLease reports whether the lease in store names b.
func holdsLease(t *testing.T, store StateStore, b *Builder) bool {
	t.Helper()
	data, _, err := store.GetState(t.Context(), leaseName)
	if err != nil {
		return false
	}
	var l lease
	if err := json.Unmarshal(data, &l); err != nil {
		t.Fatalf("lease %q: %v", data, err)
	}
	return l.Holder == b.coord.server
}

// ageBlob makes a blob of the filesystem store older.
func ageBlob(t *testing.T, s *layers.FSStore, h v1.Hash, d time.Duration) {
	t.Helper()
	past := time.Now().Add(-d)
	if err := os.Chtimes(filepath.Join(s.Dir(), "blobs", "sha256", h.Hex), past, past); err != nil {
		t.Fatal(err)
	}
}

// TestReplicasSlowBuild is testSharedSlowBuild on the in-memory shared
// store.
func TestReplicasSlowBuild(t *testing.T) {
	testSharedSlowBuild(t, newSharedStore(t))
}

// TestReplicasDeadServerMarker: the marker of a build on a server that
// died keeps blobs until it is stale, and is then deleted.
func TestReplicasDeadServerMarker(t *testing.T) {
	store := newSharedStore(t)
	b := newFixtureWith(t, nil, store, t.TempDir(), func(c *Config) { c.GCGrace = time.Nanosecond })
	store.PutState(t.Context(), markPrefix+"dead-1", []byte(`{"server":"dead","image":"x","started":"`+time.Now().Add(-time.Hour).Format(time.RFC3339)+`"}`))
	stray, _ := layers.Put(t.Context(), store, []byte("stray"))
	ageBlob(t, store.FSStore, stray, 30*time.Minute) // newer than the build's start
	if st, err := b.b.Collect(t.Context()); err != nil || st.Blobs != 0 {
		t.Fatalf("collection with a live marker: %+v, %v", st, err)
	}
	store.age(markPrefix, buildStale+time.Second)
	if st, err := b.b.Collect(t.Context()); err != nil || st.Blobs != 1 {
		t.Errorf("collection with a stale marker: %+v, %v", st, err)
	}
	if ms := store.names(markPrefix); len(ms) != 0 {
		t.Errorf("stale marker kept: %v", ms)
	}
	if !strings.Contains(b.logs.String(), "deleted the build marker of a server that stopped") {
		t.Errorf("log:\n%s", b.logs)
	}
}

// TestReplicasLease: one server at a time collects; another takes over
// when the holder stops renewing; the holder ranks images by what every
// server served.
func TestReplicasLease(t *testing.T) {
	store := newSharedStore(t)
	grace := func(c *Config) { c.GCGrace = time.Nanosecond }
	a := newFixtureWith(t, nil, store, t.TempDir(), grace)
	b := newFixtureWith(t, nil, store, t.TempDir(), grace)
	if _, err := a.b.Collect(t.Context()); err != nil || !holdsLease(t, store, a.b) {
		t.Fatalf("first collection: %v, holder %v", err, holdsLease(t, store, a.b))
	}
	stray, _ := layers.Put(t.Context(), store, []byte("stray"))
	if st, err := b.b.Collect(t.Context()); err != nil || st.Blobs != 0 || holdsLease(t, store, b.b) {
		t.Fatalf("collection without the lease: %+v, %v", st, err)
	}
	if _, err := store.Stat(t.Context(), stray); err != nil {
		t.Fatalf("a server without the lease deleted a blob: %v", err)
	}
	// The image b built and served is ranked by b's time in a's
	// collection.
	img := buildAll(t, b, "hello")[0]
	if _, err := a.b.Collect(t.Context()); err != nil { // a loads the record
		t.Fatal(err)
	}
	ai := a.b.index.get(img.Key)
	if ai == nil {
		t.Fatal("a did not load b's record")
	}
	// Later than a's own time of the image (a counts a record it loads
	// as requested when it loads it).
	served := time.Now().Add(time.Minute).UnixMilli()
	img.used.Store(served)
	if _, err := b.b.Collect(t.Context()); err != nil { // b publishes
		t.Fatal(err)
	}
	if _, err := a.b.Collect(t.Context()); err != nil { // a merges
		t.Fatal(err)
	}
	if got := ai.used.Load(); got != served {
		t.Errorf("a's time of b's image: %d, b's %d", got, served)
	}
	if _, err := store.Stat(t.Context(), stray); err == nil {
		t.Error("the holder kept a stray blob")
	}
	// a stops renewing: b takes the lease.
	store.age(leaseName, leaseTTL+time.Second)
	if _, err := b.b.Collect(t.Context()); err != nil || !holdsLease(t, store, b.b) {
		t.Fatalf("takeover: %v, holder %v", err, holdsLease(t, store, b.b))
	}
	if _, err := a.b.Collect(t.Context()); err != nil || holdsLease(t, store, a.b) {
		t.Errorf("the old holder still collects: %v", err)
	}
	if !strings.Contains(b.logs.String(), "took the garbage collection lease") {
		t.Errorf("log:\n%s", b.logs)
	}
	if got := store.names(timesPrefix); len(got) != 2 {
		t.Errorf("published times: %v", got)
	}
}

// TestReplicasS3SlowBuild is TestReplicasSlowBuild on a real SeaweedFS
// cluster: markers, lease and blobs in its buckets.
func TestReplicasS3SlowBuild(t *testing.T) {
	w := testutil.StartSeaweedFS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", w.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", w.SecretKey)
	store, err := s3store.New(t.Context(), s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: fmt.Sprintf("t%d/", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	testSharedSlowBuild(t, store)
}

// TestReplicasGCSSlowBuild is TestReplicasSlowBuild on a real GCS
// emulator (fake-gcs-server): markers, lease and blobs in its bucket.
func TestReplicasGCSSlowBuild(t *testing.T) {
	g := testutil.StartFakeGCS(t)
	store, err := gcsstore.New(t.Context(), gcsstore.Options{Bucket: g.Bucket, EmulatorHost: g.Host, Prefix: fmt.Sprintf("t%d/", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	testSharedSlowBuild(t, store)
}

// sharedBucket is a blob store that servers share: s3store's, gcsstore's.
type sharedBucket interface {
	layers.BlobStore
	RecordStore
	StateStore
}

// testSharedSlowBuild: a collection on one server deletes none of the new
// blobs of a build in progress on another, however short the grace; the
// build's marker goes when the build ends; then a server without the
// lease deletes nothing and the holder deletes an old blob no record has.
func testSharedSlowBuild(t *testing.T, store sharedBucket) {
	bl := &blockingLayers{n: 3, blocked: make(chan struct{}), release: make(chan struct{})}
	a := newFixtureWith(t, nil, store, t.TempDir(), func(c *Config) {
		bl.LayerBuilder = c.Layers
		c.Layers = bl
	})
	b := newFixtureWith(t, nil, store, t.TempDir(), func(c *Config) { c.GCGrace = time.Nanosecond })
	done := make(chan *Image)
	go func() {
		img, err := a.b.Image(context.Background(), "git", "latest")
		if err != nil {
			t.Error(err)
		}
		done <- img
	}()
	<-bl.blocked
	var marks []string
	store.ListState(t.Context(), markPrefix, func(n string, _ time.Time) error { marks = append(marks, n); return nil })
	if len(marks) != 1 {
		t.Fatalf("markers in the bucket during a build: %v", marks)
	}
	var before int
	store.List(t.Context(), func(layers.BlobInfo) error { before++; return nil })
	st, err := b.b.Collect(t.Context())
	if err != nil || st.Blobs != 0 || before == 0 || !holdsLease(t, store, b.b) {
		t.Errorf("another server's collection during a build: %+v, %v (%d blobs before, holder %v)", st, err, before, holdsLease(t, store, b.b))
	}
	close(bl.release)
	img := <-done
	if img == nil || !has(t, store, img) {
		t.Fatal("the image lost blobs")
	}
	marks = nil
	store.ListState(t.Context(), markPrefix, func(n string, _ time.Time) error { marks = append(marks, n); return nil })
	if len(marks) != 0 {
		t.Errorf("markers after the build: %v", marks)
	}
	if _, _, err := store.GetState(t.Context(), leaseName); err != nil {
		t.Errorf("no lease in the bucket: %v", err)
	}
	// a, without the lease, deletes nothing; b deletes the stray blob.
	stray, _ := layers.Put(t.Context(), store, []byte("stray"))
	if st, err := a.b.Collect(t.Context()); err != nil || st.Blobs != 0 {
		t.Errorf("collection without the lease: %+v, %v", st, err)
	}
	if st, err := b.b.Collect(t.Context()); err != nil || st.Blobs != 1 {
		t.Errorf("the holder's collection: %+v, %v", st, err)
	}
	if _, err := store.Stat(t.Context(), stray); err == nil {
		t.Error("a stray blob was kept")
	}
	if !has(t, store, img) {
		t.Error("the image lost blobs")
	}
	// Bad state names are refused before they reach the bucket.
	for _, n := range []string{"", "../x", "a//b", "a b", "gc/./x"} {
		if err := store.PutState(t.Context(), n, nil); err == nil {
			t.Errorf("PutState(%q) accepted", n)
		}
	}
}

// TestReplicasReuseLayers: a server with an empty disk on a shared store
// builds a new image from the layers other servers' images already have
// (found by their store paths in the shared records), compressing only
// the layers no image has; the digests are those it would have built.
func TestReplicasReuseLayers(t *testing.T) {
	store := newSharedStore(t)
	a := newFixtureWith(t, nil, store, t.TempDir(), nil)
	buildAll(t, a, "git", "curl")
	b := newFixtureWith(t, nil, store, t.TempDir(), nil)
	img := buildAll(t, b, "git/curl")[0]
	_, reused := b.lay.Builds()
	// The same image alone, on a store of its own: every layer built.
	c := newFixture(t, nil, nil, t.TempDir())
	alone := buildAll(t, c, "git/curl")[0]
	_, all := c.lay.Builds()
	if alone.manifests[formatDocker].Digest != img.manifests[formatDocker].Digest {
		t.Errorf("manifest %s with reused layers, %s built alone", img.manifests[formatDocker].Digest, alone.manifests[formatDocker].Digest)
	}
	if reused >= all {
		t.Errorf("%d layers built with the other server's layers known, %d alone", reused, all)
	}
	if !has(t, store.FSStore, img) {
		t.Error("the image lacks a blob")
	}
	t.Logf("layers built: %d reusing, %d alone (of %d)", reused, all, len(img.layers))
}
