package nix

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadPopularity(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pop.json")
	os.WriteFile(file, []byte(`{"glibc-2.36": 302401, "zlib-1.2": 10}`), 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pop.json" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, file)
	}))
	defer srv.Close()
	for _, from := range []string{file, "file://" + file, srv.URL + "/pop.json"} {
		pop, err := loadPopularity(t.Context(), from)
		if err != nil || pop["glibc-2.36"] != 302401 || len(pop) != 2 {
			t.Errorf("%s: %v %v", from, pop, err)
		}
	}
	if _, err := loadPopularity(t.Context(), filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing file was accepted")
	}
	if _, err := loadPopularity(t.Context(), srv.URL+"/missing"); err == nil {
		t.Error("a 404 was accepted")
	}
	os.WriteFile(file, []byte(`[1,2]`), 0o644)
	if _, err := loadPopularity(t.Context(), file); err == nil {
		t.Error("a malformed file was accepted")
	}
}

// TestPopularityFromURL: the popularity comes from the URL when one is
// given, and its fingerprint names its content.
func TestPopularityFromURL(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	os.WriteFile(a, []byte(`{"glibc-2.36": 5}`), 0o644)
	os.WriteFile(b, []byte(`{"glibc-2.36": 6}`), 0o644)
	pa, err := NewBuilder(testBundled(t), Options{PopularityURL: a}).Popularity(t.Context())
	if err != nil || pa.Map["glibc-2.36"] != 5 || pa.From != a || len(pa.Fingerprint) != 64 {
		t.Fatalf("from %s: %+v, %v", a, pa, err)
	}
	pb, err := NewBuilder(testBundled(t), Options{PopularityURL: b}).Popularity(t.Context())
	if err != nil || pb.Fingerprint == pa.Fingerprint {
		t.Errorf("two popularities, one fingerprint: %v", err)
	}
	// Sources that cannot be listed have no popularity but an empty one.
	path, _ := NewPathSource(dir)
	pe, err := NewBuilder(path, Options{}).Popularity(t.Context())
	if err != nil || len(pe.Map) != 0 || pe.Fingerprint == "" {
		t.Errorf("unlistable source: %+v, %v", pe, err)
	}
}

// TestPopularityComputed computes the bundled set's popularity with real
// Nix, keeps it in PopularityDir, reads it back without Nix, and computes
// it again when the file is damaged.
func TestPopularityComputed(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	b, runs := countingBuilder(t, testBundled(t), Options{PopularityDir: dir, Timeout: 10 * time.Minute})
	p, err := b.Popularity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p.Map["glibc-2.36"] < 20 || !strings.Contains(p.From, "computed") {
		t.Errorf("glibc's popularity %d (from %s); every program of the set needs it", p.Map["glibc-2.36"], p.From)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("popularity files %v", files)
	}
	// Another builder reads the file, without Nix.
	b2, runs2 := countingBuilder(t, testBundled(t), Options{PopularityDir: dir})
	p2, err := b2.Popularity(t.Context())
	if err != nil || p2.Fingerprint != p.Fingerprint || runs2.Load() != 0 {
		t.Errorf("from the file: %v, %d Nix runs", err, runs2.Load())
	}
	// A truncated or altered file is computed again, never trusted.
	data, _ := os.ReadFile(files[0])
	for _, damaged := range [][]byte{data[:len(data)/2], []byte(strings.Replace(string(data), `"glibc-2.36":`, `"glibc-2.36":1`, 1))} {
		if err := os.WriteFile(files[0], damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		b3, runs3 := countingBuilder(t, testBundled(t), Options{PopularityDir: dir, Timeout: 10 * time.Minute})
		p3, err := b3.Popularity(t.Context())
		if err != nil || p3.Fingerprint != p.Fingerprint || runs3.Load() == 0 {
			t.Errorf("damaged file: %v, %d Nix runs, fingerprint %s", err, runs3.Load(), p3.Fingerprint)
		}
	}
	_ = runs
}

// TestPopularityOwner: the computation belongs to the first caller; when
// it leaves, a waiter gets an error and the next call starts again.
func TestPopularityOwner(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{})
	var calls atomic.Int64
	block := make(chan struct{})
	b.run = func(ctx context.Context, c command) (output, error) {
		if calls.Add(1) == 1 {
			select {
			case <-ctx.Done():
				return output{}, ctx.Err()
			case <-block:
			}
		}
		return output{stdout: []byte(`["hello"]`)}, nil
	}
	owner, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 1)
	go func() { _, err := b.Popularity(owner); errs <- err }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errs; err == nil {
		t.Fatal("the owner's call succeeded after it was cancelled")
	}
	time.Sleep(10 * time.Millisecond)
	close(block)
	// The next call computes afresh (the fake Nix's build output is not a
	// graph, so it fails, but it ran).
	b.Popularity(t.Context())
	if calls.Load() < 2 {
		t.Errorf("the popularity was not computed again after its owner left (%d Nix runs)", calls.Load())
	}
}

// mapPopularity is a SharedPopularity in memory.
type mapPopularity struct {
	mu   sync.Mutex
	objs map[string][]byte
	puts int
}

func (m *mapPopularity) GetPopularity(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return b, nil
}

func (m *mapPopularity) PutPopularity(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[name] = data
	m.puts++
	return nil
}

// TestPopularityShared: a popularity computed with real Nix is shared; a
// builder with an empty PopularityDir takes it from there without Nix and
// keeps a copy; a damaged shared copy is computed again and replaced.
func TestPopularityShared(t *testing.T) {
	requireNix(t)
	shared := &mapPopularity{objs: map[string][]byte{}}
	b, _ := countingBuilder(t, testBundled(t), Options{PopularityDir: t.TempDir(), SharedPopularity: shared, Timeout: 10 * time.Minute})
	p, err := b.Popularity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(shared.objs) != 1 || shared.puts != 1 {
		t.Fatalf("shared: %d objects, %d puts", len(shared.objs), shared.puts)
	}
	dir := t.TempDir()
	b2, runs2 := countingBuilder(t, testBundled(t), Options{PopularityDir: dir, SharedPopularity: shared})
	p2, err := b2.Popularity(t.Context())
	if err != nil || p2.Fingerprint != p.Fingerprint || runs2.Load() != 0 || !strings.Contains(p2.From, "shared") {
		t.Errorf("from the shared store: %+v, %v, %d Nix runs", p2, err, runs2.Load())
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(files) != 1 {
		t.Errorf("local copy: %v", files)
	}
	for name, data := range shared.objs {
		shared.objs[name] = []byte(strings.Replace(string(data), `"glibc-2.36":`, `"glibc-2.36":1`, 1))
	}
	b3, runs3 := countingBuilder(t, testBundled(t), Options{PopularityDir: t.TempDir(), SharedPopularity: shared, Timeout: 10 * time.Minute})
	p3, err := b3.Popularity(t.Context())
	if err != nil || p3.Fingerprint != p.Fingerprint || runs3.Load() == 0 || shared.puts != 2 {
		t.Errorf("damaged shared copy: %v, %d Nix runs, %d puts", err, runs3.Load(), shared.puts)
	}
}
