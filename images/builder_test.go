package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/nix"
)

func TestImageFormats(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	ms := img.Manifests()
	if len(ms) != 2 || ms[0].MediaType != MediaTypeDockerManifest || ms[1].MediaType != MediaTypeOCIManifest {
		t.Fatalf("manifests %v", ms)
	}
	var got [2]v1.Manifest
	for i, m := range ms {
		if sha(m.Data) != m.Digest.String() || m.Size != int64(len(m.Data)) {
			t.Errorf("manifest %d: descriptor %v does not describe its data", i, m)
		}
		if err := json.Unmarshal(m.Data, &got[i]); err != nil {
			t.Fatal(err)
		}
		if got[i].MediaType != m.MediaType || got[i].SchemaVersion != 2 {
			t.Errorf("manifest %d: mediaType %q schemaVersion %d", i, got[i].MediaType, got[i].SchemaVersion)
		}
		// Both are in the store, so they can be served as blobs too.
		if _, err := f.store.Stat(t.Context(), m.Digest); err != nil {
			t.Errorf("manifest %d not stored: %v", i, err)
		}
	}
	if got[0].Config.MediaType != MediaTypeDockerConfig || got[1].Config.MediaType != MediaTypeOCIConfig || got[0].Config.Digest != got[1].Config.Digest {
		t.Errorf("configs %v %v", got[0].Config, got[1].Config)
	}
	if len(got[0].Layers) != 6 || len(got[1].Layers) != 6 {
		t.Fatalf("layers: %d and %d, want 6 (MaxLayers)", len(got[0].Layers), len(got[1].Layers))
	}
	for i := range got[0].Layers {
		if got[0].Layers[i].Digest != got[1].Layers[i].Digest ||
			got[0].Layers[i].MediaType != MediaTypeDockerLayer || got[1].Layers[i].MediaType != MediaTypeOCILayer {
			t.Errorf("layer %d: %v %v", i, got[0].Layers[i], got[1].Layers[i])
		}
	}
	if got := strings.Join(img.Packages, " "); got != "bashInteractive cacert coreutils curl iana-etc moreutils nano" {
		t.Errorf("packages %q", got)
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(img.Config(), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || fmt.Sprint(cfg.Config.Cmd) != "[bash]" || len(cfg.History) != 6 ||
		cfg.History[5].Comment != "customisation layer: bashInteractive cacert coreutils curl iana-etc moreutils nano" {
		t.Errorf("config %s", img.Config())
	}
	// Kubernetes once refused upstream Nixery's images for want of a
	// "config" object (tazjin/nixery#1): it must always be there.
	if !strings.Contains(string(img.Config()), `"config":{"Env":["PATH=/bin:/usr/bin:/sbin","SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"]`) {
		t.Errorf("config lacks its config object: %s", img.Config())
	}
	if f.nix.Runs.Load() != 1 {
		t.Errorf("Nix ran %d times, want 1", f.nix.Runs.Load())
	}
}

// TestSpellings: a permutation of a name is the same request (no Nix run);
// another spelling of the same packages runs Nix to resolve them and gives
// the same image, with nothing built again.
func TestSpellings(t *testing.T) {
	f := newFixture(t, nil, nil, t.TempDir())
	first, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	_, builds := f.lay.Builds()
	for _, name := range []string{"curl/shell/curl", "CURL/shell", "shell/Curl/cacert", "shell/BashInteractive/curl"} {
		img, err := f.b.Image(t.Context(), name, "latest")
		if err != nil {
			t.Fatal(err)
		}
		if img.Key != first.Key || img.Manifests()[0].Digest != first.Manifests()[0].Digest {
			t.Errorf("%s: a different image (%s) from shell/curl's %s", name, img.Manifests()[0].Digest, first.Manifests()[0].Digest)
		}
	}
	if runs := f.nix.Runs.Load(); runs != 4 { // shell/curl, CURL/shell, shell/Curl/cacert, shell/BashInteractive/curl
		t.Errorf("Nix ran %d times, want 4 (curl/shell/curl is shell/curl)", runs)
	}
	if _, n := f.lay.Builds(); n != builds {
		t.Errorf("other spellings built %d more layers", n-builds)
	}
	if n := strings.Count(f.logs.String(), "msg=build "); n != 1 {
		t.Errorf("%d builds logged, want 1", n)
	}
	if recs, _ := filepath.Glob(filepath.Join(f.dir, "*.json")); len(recs) != 1 {
		t.Errorf("%d records for one image", len(recs))
	}
}

func TestConcurrentBuildsOnce(t *testing.T) {
	f := newFixture(t, &fakenix.Nix{Delay: 50 * time.Millisecond}, nil, "")
	const n = 50
	var wg sync.WaitGroup
	digests := make([]v1.Hash, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := f.b.Image(t.Context(), "shell/git", "latest")
			if err != nil {
				t.Error(err)
				return
			}
			digests[i] = img.Manifests()[0].Digest
		}()
	}
	wg.Wait()
	if got := f.nix.Runs.Load(); got != 1 {
		t.Errorf("%d concurrent requests ran Nix %d times, want 1", n, got)
	}
	if max, total := f.lay.Builds(); max != 1 || total != 5 {
		t.Errorf("layers built: at most %d times each, %d builds; want 1 and 5", max, total)
	}
	for _, d := range digests {
		if d != digests[0] {
			t.Fatalf("different digests: %s %s", d, digests[0])
		}
	}
}

// TestSharedLayers: two images that share store paths share layers.
func TestSharedLayers(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	a, err := f.b.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for _, la := range a.Layers() {
		for _, lb := range b.Layers() {
			if la.Digest == lb.Digest {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Error("curl and git share no layer")
	}
}

// TestUnpinned: a source that is not pinned runs Nix for every request,
// and gives the image built before when the store paths are the same.
func TestUnpinned(t *testing.T) {
	f := newFixture(t, &fakenix.Nix{Unpinned: true}, nil, "")
	a, err := f.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	_, builds := f.lay.Builds()
	b, err := f.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.nix.Runs.Load(); got != 2 {
		t.Errorf("Nix ran %d times for two requests, want 2", got)
	}
	if a != b {
		t.Error("the same store paths gave another image")
	}
	if _, n := f.lay.Builds(); n != builds {
		t.Error("the second request built layers")
	}
	if _, err := f.b.Manifest(t.Context(), a.Manifests()[1].Digest); err != nil {
		t.Errorf("by digest: %v", err)
	}
}

func TestTags(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	for _, tag := range []string{"v1.0", strings.Repeat("ab", 20)} {
		if _, err := f.b.Image(t.Context(), "hello", tag); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tag) {
			t.Errorf("tag %s of a source with one version: %v", tag, err)
		}
	}
	g := newFixture(t, &fakenix.Nix{Git: true}, nil, "")
	commit := strings.Repeat("ab", 20)
	if _, err := g.b.Image(t.Context(), "hello", commit); err != nil {
		t.Errorf("commit tag: %v", err)
	}
	if _, err := g.b.Image(t.Context(), "hello", "main"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown ref: %v", err)
	}
	if f.nix.Runs.Load() != 0 || g.nix.Runs.Load() != 1 {
		t.Errorf("Nix ran %d and %d times, want 0 and 1", f.nix.Runs.Load(), g.nix.Runs.Load())
	}
}

// TestErrors: the builder's errors say what they are with the standard
// errors the registry classifies them by, and failures are not cached.
func TestErrors(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	ctx := t.Context()
	if _, err := f.b.Image(ctx, "curl/doesnotexist/alsomissing", "latest"); !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "unknown packages: alsomissing, doesnotexist") {
		t.Errorf("unknown packages: %v", err)
	}
	if _, err := f.b.Image(ctx, "arm64/curl", "latest"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("unsupported system: %v", err)
	}
	if _, err := f.b.Image(ctx, "arm64", "latest"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("no packages: %v", err)
	}
	f.nix.Err = fmt.Errorf("nix-build: %w", nix.ErrTimeout)
	if _, err := f.b.Image(ctx, "curl", "latest"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
	f.nix.Err = &nix.BuildError{Op: "build", Err: errors.New("exit status 1"), Log: "error: builder failed"}
	if _, err := f.b.Image(ctx, "curl", "latest"); err == nil || !strings.Contains(err.Error(), "build failed") {
		t.Errorf("build failure: %v", err)
	}
	f.nix.Err = nil
	// The failure is remembered for the request as spelt; the timeout
	// before it was not.
	if _, err := f.b.Image(ctx, "curl", "latest"); err == nil || !strings.Contains(err.Error(), "build failed") {
		t.Errorf("right after a build failure: %v, want the same failure", err)
	}
	if _, err := f.b.Image(ctx, "CURL", "latest"); err != nil {
		t.Errorf("after failures: %v", err)
	}
	if got := f.nix.Runs.Load(); got != 5 {
		t.Errorf("Nix ran %d times, want 5 (arm64 alone never reaches it, the remembered failure neither)", got)
	}
}

// TestNegativeCache: lasting failures are remembered for NegativeTTL by
// request, so Nix does not run again for them; timeouts, full queues and
// cancellations are not remembered.
func TestNegativeCache(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	ctx := t.Context()
	for range 3 {
		if _, err := f.b.Image(ctx, "nosuchpackage", "latest"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("unknown package: %v", err)
		}
	}
	if got := f.nix.Runs.Load(); got != 1 {
		t.Errorf("three requests for an unknown package ran Nix %d times, want 1", got)
	}
	for _, transient := range []error{
		fmt.Errorf("nix-build: %w", nix.ErrTimeout),
		&nix.BusyError{Running: 2, Queued: 32, After: time.Second},
		context.Canceled,
	} {
		f.nix.Err = transient
		f.nix.Runs.Store(0)
		for range 2 {
			if _, err := f.b.Image(ctx, "hello", "latest"); !errors.Is(err, transient) {
				t.Fatalf("%v: got %v", transient, err)
			}
		}
		if got := f.nix.Runs.Load(); got != 2 {
			t.Errorf("%v: Nix ran %d times for two requests, want 2 (not remembered)", transient, got)
		}
	}
	f.nix.Err = nil
	if _, err := f.b.Image(ctx, "hello", "latest"); err != nil {
		t.Errorf("after transient failures: %v", err)
	}

	// Entries expire, and the cache is bounded.
	var c failures
	c.ttl = time.Millisecond
	c.put("a", fs.ErrNotExist)
	if c.get("a") == nil {
		t.Error("a failure was not remembered")
	}
	time.Sleep(5 * time.Millisecond)
	if c.get("a") != nil {
		t.Error("a failure outlived its TTL")
	}
	c.ttl = time.Hour
	for i := range maxFailures + 100 {
		c.put(fmt.Sprint(i), fs.ErrNotExist)
	}
	if len(c.m) != maxFailures || c.get(fmt.Sprint(maxFailures+99)) == nil {
		t.Errorf("%d failures remembered, want %d with the latest", len(c.m), maxFailures)
	}
	off := newFixtureTTL(t, nil, nil, "", -1)
	for range 2 {
		off.b.Image(ctx, "nosuchpackage", "latest")
	}
	if got := off.nix.Runs.Load(); got != 2 {
		t.Errorf("with NegativeTTL < 0, Nix ran %d times for two requests, want 2", got)
	}
}

// TestAbandonedQueuedBuild: a build still waiting for a Nix slot when its
// last waiter leaves is cancelled and builds nothing; a new request starts
// a new build.
func TestAbandonedQueuedBuild(t *testing.T) {
	f := newFixture(t, &fakenix.Nix{Queue: make(chan struct{})}, nil, "")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.b.Image(ctx, "curl", "latest"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a queued build answered: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(f.logs.String(), `msg="build cancelled"`) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s := f.logs.String(); !strings.Contains(s, `msg="build cancelled"`) || strings.Contains(s, "build failed") {
		t.Errorf("log:\n%s", s)
	}
	close(f.nix.Queue)
	if _, total := f.lay.Builds(); total != 0 {
		t.Errorf("the abandoned build built %d layers", total)
	}
	if _, err := f.b.Image(t.Context(), "curl", "latest"); err != nil {
		t.Errorf("a new request after an abandoned build: %v", err)
	}
	if got := f.nix.Runs.Load(); got != 2 {
		t.Errorf("Nix ran %d times, want 2", got)
	}
}

// TestAbandonedRunningBuild: a build whose Nix has started finishes when
// its last waiter leaves, and its image is cached.
func TestAbandonedRunningBuild(t *testing.T) {
	f := newFixture(t, &fakenix.Nix{Block: make(chan struct{})}, nil, "")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.b.Image(ctx, "curl", "latest"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a blocked build answered: %v", err)
	}
	close(f.nix.Block)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(f.logs.String(), "msg=build ") && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if _, ok := f.b.CachedManifests("curl", "latest"); !ok {
		t.Fatalf("the abandoned build's image is not cached; log:\n%s", f.logs.String())
	}
	if got := f.nix.Runs.Load(); got != 1 {
		t.Errorf("Nix ran %d times, want 1", got)
	}
}

// TestCachedManifests: the lookup answers built images of a pinned source
// without Nix, also after a restart, and nothing else.
func TestCachedManifests(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, nil, dir)
	if _, ok := f.b.CachedManifests("shell/curl", "latest"); ok {
		t.Error("an image not built yet is cached")
	}
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if ms, ok := f.b.CachedManifests("shell/curl", "latest"); !ok || ms[0].Digest != img.Manifests()[0].Digest {
		t.Errorf("the built image: %v %v", ms, ok)
	}
	f.b.Close()
	f2 := newFixture(t, nil, f.store, dir)
	var ms []v1.Descriptor
	ok := false
	for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		ms, ok = f2.b.CachedManifests("shell/curl", "latest") // once the popularity is known
	}
	if !ok || ms[1].Digest != img.Manifests()[1].Digest {
		t.Errorf("after a restart: %v %v", ms, ok)
	}
	for _, name := range []string{"curl/shell/nosuch", "Shell/curl", "a//b", "hello"} {
		if _, ok := f2.b.CachedManifests(name, "latest"); ok {
			t.Errorf("%s is cached", name)
		}
	}
	if _, ok := f2.b.CachedManifests("shell/curl", "v2"); ok {
		t.Error("an unknown tag is cached")
	}
	if got := f2.nix.Runs.Load(); got != 0 {
		t.Errorf("lookups ran Nix %d times", got)
	}
	un := newFixture(t, &fakenix.Nix{Unpinned: true}, nil, "")
	if _, err := un.b.Image(t.Context(), "hello", "latest"); err != nil {
		t.Fatal(err)
	}
	if _, ok := un.b.CachedManifests("hello", "latest"); ok {
		t.Error("an unpinned source's image is cached by request")
	}
}

// TestCancelKeepsBuilding: a caller that gives up does not stop the build
// for the others, and cached images are served while a build hangs.
func TestCancelKeepsBuilding(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	if _, err := f.b.Image(t.Context(), "hello", "latest"); err != nil {
		t.Fatal(err)
	}
	f.nix.Block = make(chan struct{})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.b.Image(ctx, "curl", "latest"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a hanging build answered: %v", err)
	}
	if _, err := f.b.Image(t.Context(), "hello", "latest"); err != nil {
		t.Fatalf("cached image while a build hangs: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := f.b.Image(t.Context(), "curl", "latest"); done <- err }()
	close(f.nix.Block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	f1 := newFixture(t, nil, nil, dir)
	img, err := f1.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f1.b.Image(t.Context(), "CURL/shell", "latest"); err != nil {
		t.Fatal(err)
	}
	f1.b.Close()

	f2 := newFixture(t, nil, f1.store, dir)
	for _, m := range img.Manifests() {
		d, err := f2.b.Manifest(t.Context(), m.Digest)
		if err != nil || string(d.Data) != string(m.Data) || d.MediaType != m.MediaType {
			t.Errorf("after restart, by digest: %v %v", d, err)
		}
	}
	for _, name := range []string{"curl/shell", "CURL/shell"} {
		got, err := f2.b.Image(t.Context(), name, "latest")
		if err != nil || got.Manifests()[1].Digest != img.Manifests()[1].Digest {
			t.Errorf("after restart, %s: %v", name, err)
		}
	}
	if got := f2.nix.Runs.Load(); got != 0 {
		t.Errorf("after restart Nix ran %d times", got)
	}
	if !strings.Contains(f2.logs.String(), "loaded image index") {
		t.Errorf("no line about the index:\n%s", f2.logs.String())
	}

	// A damaged record is skipped, not fatal; so is one whose layer is gone.
	entries, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(entries) != 1 {
		t.Fatalf("records: %v", entries)
	}
	if err := os.WriteFile(entries[0], []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	f3 := newFixture(t, nil, f1.store, dir)
	if _, err := f3.b.Image(t.Context(), "shell/curl", "latest"); err != nil || f3.nix.Runs.Load() != 1 {
		t.Errorf("damaged record: %v, %d runs", err, f3.nix.Runs.Load())
	}
	f3.b.Close()
	if !strings.Contains(f3.logs.String(), "dropping damaged image record") {
		t.Errorf("the damaged record was not dropped:\n%s", f3.logs.String())
	}
	// A record whose layer is missing is loaded and its layer rebuilt at
	// start, without Nix.
	lost := img.Layers()[0]
	if err := os.Remove(filepath.Join(f1.store.Dir(), "blobs", "sha256", lost.Digest.Hex)); err != nil {
		t.Fatal(err)
	}
	f4 := newFixture(t, nil, f1.store, dir)
	if _, err := f4.b.Image(t.Context(), "shell/curl", "latest"); err != nil || f4.nix.Runs.Load() != 0 {
		t.Errorf("missing layer: %v, %d runs", err, f4.nix.Runs.Load())
	}
	rc, n, err := f4.b.Blob(t.Context(), lost.Digest)
	if err != nil || n != lost.Size {
		t.Fatalf("the missing layer after restart: %d bytes, %v", n, err)
	}
	checkBody(t, rc, lost.Digest)
	if !strings.Contains(f4.logs.String(), "rebuilt a blob") {
		t.Errorf("no rebuild logged:\n%s", f4.logs.String())
	}
}

// TestManifestFromStore: a manifest another process wrote to a shared
// store is found by digest; other blobs are not manifests.
func TestManifestFromStore(t *testing.T) {
	f1 := newFixture(t, nil, nil, "")
	img, err := f1.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	f2 := newFixture(t, nil, f1.store, "")
	for _, m := range img.Manifests() {
		d, err := f2.b.Manifest(t.Context(), m.Digest)
		if err != nil || d.MediaType != m.MediaType || string(d.Data) != string(m.Data) {
			t.Errorf("manifest from the store: %v, %v", d.MediaType, err)
		}
	}
	for _, h := range []v1.Hash{img.configDescriptor().Digest, img.Layers()[0].Digest} {
		if _, err := f2.b.Manifest(t.Context(), h); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("blob %s served as a manifest: %v", h, err)
		}
	}
}

// TestDamagedBlob: a blob whose size differs from what its image records is
// reported as damaged, not opened.
func TestDamagedBlob(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	img, err := f.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	l := img.Layers()[0]
	rc, n, err := f.b.Blob(t.Context(), l.Digest)
	if err != nil || n != l.Size {
		t.Fatalf("Blob: %d, %v", n, err)
	}
	rc.Close()
	file := filepath.Join(f.store.Dir(), "blobs", "sha256", l.Digest.Hex)
	os.Chmod(file, 0o644)
	if err := os.Truncate(file, l.Size/2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.b.Blob(t.Context(), l.Digest); !errors.Is(err, ErrDamaged) {
		t.Errorf("truncated blob: %v", err)
	}
	if _, _, err := f.b.Blob(t.Context(), v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unknown blob: %v", err)
	}
}

// TestV1 checks the go-containerregistry view of an image: valid, with the
// Docker manifest's digest, its layers readable from the store.
func TestV1(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	img, err := f.b.Image(t.Context(), "shell/git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	v := img.V1(t.Context(), f.store)
	if err := validate.Image(v); err != nil {
		t.Fatalf("validate: %v", err)
	}
	d, err := v.Digest()
	if err != nil || d != img.Manifests()[0].Digest {
		t.Errorf("digest %s (%v), want the Docker manifest's %s", d, err, img.Manifests()[0].Digest)
	}
	ls, err := v.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[len(ls)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := tarEntries(t, rc)
	if files["bin/git"] != "-> "+storePath("git")+"/bin/git" {
		t.Errorf("bin/git: %q", files["bin/git"])
	}
	io.Copy(io.Discard, rc)
}

// TestV1OCI checks the OCI view: valid, with the OCI manifest's digest and
// media types, and the same config and layer blobs as the Docker view.
func TestV1OCI(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	img, err := f.b.Image(t.Context(), "shell/git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	v := img.V1OCI(t.Context(), f.store)
	if err := validate.Image(v); err != nil {
		t.Fatalf("validate: %v", err)
	}
	d, err := v.Digest()
	if err != nil || d != img.Manifests()[1].Digest {
		t.Errorf("digest %s (%v), want the OCI manifest's %s", d, err, img.Manifests()[1].Digest)
	}
	m, err := v.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != MediaTypeOCIManifest || m.Config.MediaType != MediaTypeOCIConfig {
		t.Errorf("media types %s, config %s; want OCI's", m.MediaType, m.Config.MediaType)
	}
	dm, err := img.V1(t.Context(), f.store).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != dm.Config.Digest || len(m.Layers) != len(dm.Layers) {
		t.Fatalf("OCI config %s with %d layers, Docker's %s with %d", m.Config.Digest, len(m.Layers), dm.Config.Digest, len(dm.Layers))
	}
	for i, l := range m.Layers {
		if l.MediaType != MediaTypeOCILayer || l.Digest != dm.Layers[i].Digest {
			t.Errorf("layer %d: %s %s, want %s %s", i, l.MediaType, l.Digest, MediaTypeOCILayer, dm.Layers[i].Digest)
		}
	}
}
