package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/internal/testutil/memstore"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// blobFile is the file of blob h in f's store.
func (f *fixture) blobFile(h v1.Hash) string {
	return filepath.Join(f.store.Dir(), "blobs", "sha256", h.Hex)
}

// damageFile rewrites a blob file in place: "truncate" keeps half of it,
// "corrupt" flips a bit in the middle, "delete" removes it.
func damageFile(t *testing.T, file, how string) {
	t.Helper()
	if how == "delete" {
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	switch how {
	case "truncate":
		b = b[:len(b)/2]
	case "corrupt":
		b[len(b)/2] ^= 1
	}
	os.Chmod(file, 0o644)
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// serve gets blob h from the builder and checks its bytes.
func serve(t *testing.T, b *Builder, h v1.Hash) error {
	t.Helper()
	rc, n, err := b.Blob(t.Context(), h)
	if err != nil {
		return err
	}
	if want, ok := b.index.blobSize(h); ok && n != want {
		t.Errorf("blob %s: %d bytes, %d recorded", h, n, want)
	}
	checkBody(t, rc, h)
	return nil
}

// TestBlobDamage: every kind of blob of an image, truncated, corrupted in
// place (after it was served and verified) or deleted, is never served
// wrong: a damaged one is quarantined and that request fails with
// ErrDamaged, the next one gets the rebuilt blob; a deleted one is rebuilt
// while the request waits. Nix never runs again.
func TestBlobDamage(t *testing.T) {
	f := newFixture(t, nil, nil, t.TempDir())
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	ls := img.Layers()
	blobs := map[string]v1.Hash{
		"layer":    ls[0].Digest,
		"custom":   ls[len(ls)-1].Digest,
		"config":   img.configDescriptor().Digest,
		"manifest": img.Manifests()[1].Digest,
	}
	quarantined := 0
	for what, h := range blobs {
		for _, how := range []string{"truncate", "corrupt", "delete"} {
			if err := serve(t, f.b, h); err != nil {
				t.Fatalf("%s before the damage: %v", what, err)
			}
			damageFile(t, f.blobFile(h), how)
			err := serve(t, f.b, h)
			if how == "delete" {
				if err != nil {
					t.Errorf("%s deleted: %v, want the rebuilt blob", what, err)
				}
				continue
			}
			quarantined++
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("%s %sd: %v, want ErrDamaged", what, how, err)
			}
			if err := serve(t, f.b, h); err != nil {
				t.Errorf("%s %sd, the retry: %v", what, how, err)
			}
		}
	}
	q, _ := filepath.Glob(filepath.Join(f.store.Dir(), "quarantine", "*"))
	if len(q) != quarantined {
		t.Errorf("%d blobs quarantined, want %d", len(q), quarantined)
	}
	if runs := f.nix.Runs.Load(); runs != 1 {
		t.Errorf("Nix ran %d times, want 1", runs)
	}
	if !strings.Contains(f.logs.String(), "quarantined a damaged blob") || !strings.Contains(f.logs.String(), "rebuilt a blob") {
		t.Errorf("log:\n%s", f.logs)
	}
}

// TestBlobDamageMemstore: the same through a store whose readers have no
// file identity (hashed on every open), with its own quarantine.
func TestBlobDamageMemstore(t *testing.T) {
	s := memstore.New()
	f := newFixtureWith(t, nil, s, t.TempDir(), nil)
	img, err := f.b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	h := img.Layers()[0].Digest
	for _, damage := range []func(v1.Hash) bool{s.Corrupt, func(h v1.Hash) bool { return s.Truncate(h, 10) }} {
		if !damage(h) {
			t.Fatal("no blob to damage")
		}
		bad, _ := s.Blob(h)
		if err := serve(t, f.b, h); !errors.Is(err, ErrDamaged) {
			t.Errorf("damaged: %v", err)
		}
		if q, ok := s.Quarantined(h); !ok || !bytes.Equal(q, bad) {
			t.Error("the damaged bytes were not quarantined")
		}
		if err := serve(t, f.b, h); err != nil {
			t.Errorf("retry: %v", err)
		}
	}
	s.Lose(h)
	if err := serve(t, f.b, h); err != nil {
		t.Errorf("lost: %v", err)
	}
}

// restoringNix is the fake Nix that puts store paths back into the fake
// store when it builds, as Nix realises paths that were collected.
type restoringNix struct {
	*fakenix.Nix
	restore func()
}

func (r restoringNix) Build(ctx context.Context, req nix.Request) (*nix.Result, error) {
	r.restore()
	return r.Nix.Build(ctx, req)
}

// TestBlobRepairFromNix: a layer whose store paths left the Nix store is
// rebuilt after Nix realises them again.
func TestBlobRepairFromNix(t *testing.T) {
	nx := &fakenix.Nix{}
	var f *fixture
	saved := map[string]*fstest.MapFile{}
	f = newFixtureWith(t, nx, newStore(t), t.TempDir(), func(c *Config) {
		c.Nix = restoringNix{nx, func() {
			for k, v := range saved {
				f.fs[k] = v
			}
		}}
	})
	img, err := f.b.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	curl := strings.TrimPrefix(fakenix.StorePath("curl"), "/")
	for k, v := range f.fs {
		if strings.HasPrefix(k, curl) {
			saved[k] = v
			delete(f.fs, k)
		}
	}
	custom := img.Layers()[len(img.Layers())-1].Digest
	if err := f.b.cfg.Store.Delete(t.Context(), custom); err != nil {
		t.Fatal(err)
	}
	if err := serve(t, f.b, custom); err != nil {
		t.Fatalf("a layer whose store paths are gone: %v", err)
	}
	if runs := nx.Runs.Load(); runs != 2 {
		t.Errorf("Nix ran %d times, want 2 (the build, the rebuild)", runs)
	}
	if !strings.Contains(f.logs.String(), "realising store paths again") {
		t.Errorf("log:\n%s", f.logs)
	}
}

// oldRecords rewrites the records in dir as records written before store
// paths were kept.
func oldRecords(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, file := range files {
		b, _ := os.ReadFile(file)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["layers"] == nil || m["outputs"] == nil {
			t.Fatalf("record %s keeps no store paths: %s", file, b)
		}
		delete(m, "layers")
		delete(m, "outputs")
		b, _ = json.Marshal(m)
		os.WriteFile(file, b, 0o644)
	}
}

// TestBlobUnrebuildable: an image whose damaged layer cannot be rebuilt
// (its record predates store paths) is dropped, and built again from Nix
// when asked for; at load, such a record is dropped at once.
func TestBlobUnrebuildable(t *testing.T) {
	dir := t.TempDir()
	f1 := newFixture(t, nil, nil, dir)
	img, err := f1.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	f1.b.Close()
	oldRecords(t, dir)
	f2 := newFixture(t, nil, f1.store, dir)
	h := img.Layers()[0].Digest
	damageFile(t, f2.blobFile(h), "corrupt")
	if err := serve(t, f2.b, h); !errors.Is(err, ErrDamaged) {
		t.Errorf("damaged: %v", err)
	}
	// The retry waits for the failed rebuild (ErrDamaged) or comes after
	// it; then the blob is unknown, its image dropped.
	if err := serve(t, f2.b, h); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrDamaged) {
		t.Errorf("retry: %v", err)
	}
	if err := serve(t, f2.b, h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second retry: %v, want unknown (the image is dropped)", err)
	}
	if recs, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(recs) != 0 {
		t.Errorf("records left: %q", recs)
	}
	again, err := f2.b.Image(t.Context(), "hello", "latest")
	if err != nil || again.Manifests()[0].Digest != img.Manifests()[0].Digest || f2.nix.Runs.Load() != 1 {
		t.Fatalf("built again: %v, %d runs", err, f2.nix.Runs.Load())
	}
	if err := serve(t, f2.b, h); err != nil {
		t.Errorf("after the image was built again: %v", err)
	}
	f2.b.Close()

	// At load.
	oldRecords(t, dir)
	damageFile(t, f2.blobFile(h), "truncate")
	f3 := newFixture(t, nil, f1.store, dir)
	if !strings.Contains(f3.logs.String(), "dropping damaged image record") {
		t.Errorf("log:\n%s", f3.logs)
	}
	if _, err := f3.b.Image(t.Context(), "hello", "latest"); err != nil || f3.nix.Runs.Load() != 1 {
		t.Errorf("after the drop: %v, %d runs", err, f3.nix.Runs.Load())
	}
}

// TestUnknownBlob: a blob no image has (another process's) is served when
// it verifies, quarantined when it does not, and unknown afterwards.
func TestUnknownBlob(t *testing.T) {
	f := newFixture(t, nil, nil, t.TempDir())
	data := make([]byte, 10000)
	rand.Read(data)
	h, err := layers.Put(t.Context(), f.store, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := serve(t, f.b, h); err != nil {
		t.Fatal(err)
	}
	damageFile(t, f.blobFile(h), "corrupt")
	if err := serve(t, f.b, h); !errors.Is(err, ErrDamaged) {
		t.Errorf("damaged: %v", err)
	}
	if err := serve(t, f.b, h); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after quarantine: %v", err)
	}
}

// TestSharedStoreRepair: a process repairs a blob of an image another
// process built in the same storage, which it learns of from the records.
func TestSharedStoreRepair(t *testing.T) {
	dir := t.TempDir()
	a := newFixture(t, nil, nil, dir)
	b := newFixture(t, nil, a.store, dir)
	img, err := a.b.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	h := img.Layers()[0].Digest
	damageFile(t, b.blobFile(h), "delete")
	if err := serve(t, b.b, h); err != nil {
		t.Errorf("b, a blob of a's image: %v", err)
	}
	if err := serve(t, a.b, h); err != nil {
		t.Errorf("a: %v", err)
	}
}

// TestScrub: a scrub finds damage that no write revealed, rebuilds the
// blobs of images and quarantines others; it holds its rate.
func TestScrub(t *testing.T) {
	f := newFixture(t, nil, nil, t.TempDir())
	img, err := f.b.Image(t.Context(), "shell/git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := layers.Put(t.Context(), f.store, []byte("another process's blob"))
	st, err := f.b.Scrub(t.Context(), 0)
	if err != nil || st.Damaged != 0 || st.Blobs != len(img.blobs())+1 {
		t.Fatalf("clean scrub: %+v, %v", st, err)
	}
	h := img.Layers()[1].Digest
	for _, d := range []v1.Hash{h, other} {
		file := f.blobFile(d)
		fi, _ := os.Stat(file)
		damageFile(t, file, "corrupt")
		os.Chtimes(file, fi.ModTime(), fi.ModTime())
	}
	st, err = f.b.Scrub(t.Context(), 0)
	if err != nil || st.Damaged != 2 || st.Repaired != 1 {
		t.Errorf("scrub: %+v, %v; want 2 damaged, 1 repaired", st, err)
	}
	if err := serve(t, f.b, h); err != nil {
		t.Errorf("the repaired layer: %v", err)
	}
	if _, err := f.store.Stat(t.Context(), other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the damaged unknown blob is still there: %v", err)
	}
	if !strings.Contains(f.logs.String(), "msg=scrub") {
		t.Errorf("no scrub line:\n%s", f.logs)
	}
	// The pacer: 60 kB at 100 kB/s take at least 0.6 s.
	p := &pacer{rate: 100_000, start: time.Now()}
	for range 3 {
		if err := p.wait(t.Context(), 20_000); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(p.start); d < 550*time.Millisecond {
		t.Errorf("60 kB at 100 kB/s took %v", d)
	}
}

// TestRecordKeepsStorePaths: a record keeps the tag, the store paths of
// each layer and the outputs, which rebuilds need.
func TestRecordKeepsStorePaths(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, nil, dir)
	img, err := f.b.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, img.Key+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Tag != "latest" || len(rec.Layers) != len(img.Layers()) || len(rec.Outputs) != len(rec.Packages) {
		t.Fatalf("record %s", b)
	}
	for i, l := range rec.Layers {
		last := i == len(rec.Layers)-1
		if l.Digest != img.Layers()[i].Digest || last != (len(l.Paths) == 0) {
			t.Errorf("layer %d: %+v", i, l)
		}
	}
	for i, p := range rec.Outputs {
		if p != fakenix.StorePath(rec.Packages[i]) {
			t.Errorf("output %d: %s for %s", i, p, rec.Packages[i])
		}
	}
}
