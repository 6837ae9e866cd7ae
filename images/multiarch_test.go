package images

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/nix"
)

// armNix is a fake Nix that builds aarch64-linux too.
func armNix() *fakenix.Nix { return &fakenix.Nix{Systems: []string{SystemARM64}} }

// checkIndexes checks the two indexes of a name: formats, members and
// their platforms, and returns the members' manifests (amd64, arm64) of
// the Docker list.
func checkIndexes(t *testing.T, f *fixture, ds []v1.Descriptor) []v1.Descriptor {
	t.Helper()
	if len(ds) != 2 || ds[0].MediaType != MediaTypeDockerManifestList || ds[1].MediaType != MediaTypeOCIIndex {
		t.Fatalf("indexes %v, want a Docker manifest list and an OCI index", ds)
	}
	var members []v1.Descriptor
	for i, d := range ds {
		idx, err := v1.ParseIndexManifest(bytes.NewReader(d.Data))
		if err != nil || len(idx.Manifests) != 2 {
			t.Fatalf("index %d: %v, %d manifests", i, err, len(idx.Manifests))
		}
		want := []v1.Platform{{Architecture: "amd64", OS: "linux"}, {Architecture: "arm64", OS: "linux", Variant: "v8"}}
		for j, m := range idx.Manifests {
			if m.Platform == nil || !m.Platform.Equals(want[j]) {
				t.Errorf("index %d member %d: platform %+v, want %+v", i, j, m.Platform, want[j])
			}
			md, err := f.b.Manifest(t.Context(), m.Digest)
			if err != nil || md.MediaType != m.MediaType {
				t.Fatalf("member %s: %v %s", m.Digest, err, md.MediaType)
			}
			var man v1.Manifest
			json.Unmarshal(md.Data, &man)
			rc, _, err := f.b.Blob(t.Context(), man.Config.Digest)
			if err != nil {
				t.Fatal(err)
			}
			var cfg v1.ConfigFile
			json.NewDecoder(rc).Decode(&cfg)
			rc.Close()
			if cfg.Architecture != want[j].Architecture || cfg.Variant != want[j].Variant || cfg.OS != "linux" {
				t.Errorf("member %d config: %s/%s/%s", j, cfg.OS, cfg.Architecture, cfg.Variant)
			}
		}
		if i == 0 {
			members = idx.Manifests
		}
		// Served by digest, from the index of images.
		got, err := f.b.Manifest(t.Context(), d.Digest)
		if err != nil || !bytes.Equal(got.Data, d.Data) || got.MediaType != d.MediaType {
			t.Errorf("Manifest(%s) = %v, %v", d.Digest, got.MediaType, err)
		}
	}
	return members
}

func TestIndexes(t *testing.T) {
	nx := armNix()
	dir := t.TempDir()
	f := newFixture(t, nx, nil, dir)
	ctx := t.Context()
	ds, err := f.b.Indexes(ctx, "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	members := checkIndexes(t, f, ds)

	// The amd64 member is the image a client of manifests gets; the arm64
	// one is arm64/...'s.
	amd, err := f.b.Manifests(ctx, "shell/curl", "latest")
	if err != nil || amd[0].Digest != members[0].Digest {
		t.Errorf("Manifests(shell/curl) = %v, %v; want the amd64 member %s", amd, err, members[0].Digest)
	}
	arm, err := f.b.Manifests(ctx, "arm64/shell/curl", "latest")
	if err != nil || arm[0].Digest != members[1].Digest {
		t.Errorf("Manifests(arm64/shell/curl) = %v, %v; want the arm64 member %s", arm, err, members[1].Digest)
	}
	// arm64/... has no index.
	if ds, err := f.b.Indexes(ctx, "arm64/curl", "latest"); ds != nil || err != nil {
		t.Errorf("Indexes(arm64/curl) = %v, %v; want none", ds, err)
	}
	// Cached: no more Nix runs; the same bytes for another spelling.
	runs := nx.Runs.Load()
	again, err := f.b.Indexes(ctx, "curl/shell", "latest")
	if err != nil || !bytes.Equal(again[1].Data, ds[1].Data) {
		t.Errorf("Indexes(curl/shell) differs: %v", err)
	}
	if c, ok := f.b.CachedIndexes("shell/curl", "latest"); !ok || c[0].Digest != ds[0].Digest {
		t.Errorf("CachedIndexes = %v, %v", c, ok)
	}
	if nx.Runs.Load() != runs {
		t.Errorf("Nix ran %d times for cached indexes", nx.Runs.Load()-runs)
	}
	// Both members keep the indexes, for collections.
	for _, d := range ds {
		if owners := f.b.index.owners(d.Digest); len(owners) != 2 {
			t.Errorf("index %s has %d owner images, want 2", d.Digest, len(owners))
		}
		if n, err := f.store.Stat(ctx, d.Digest); err != nil || n != d.Size {
			t.Errorf("index %s in the store: %d bytes, %v", d.Digest, n, err)
		}
	}

	// After a restart, from the records: without Nix, by name and by
	// digest, even when the store lost the index blob.
	f.b.Close()
	if err := f.store.Delete(ctx, ds[1].Digest); err != nil {
		t.Fatal(err)
	}
	nx2 := armNix()
	g := newFixture(t, nx2, f.store, dir)
	got, err := g.b.Manifest(ctx, ds[1].Digest)
	if err != nil || !bytes.Equal(got.Data, ds[1].Data) {
		t.Errorf("after a restart, Manifest(index) = %v", err)
	}
	if n, err := g.store.Stat(ctx, ds[1].Digest); err != nil || n != ds[1].Size {
		t.Errorf("the lost index was not written again: %v", err)
	}
	var cached []v1.Descriptor
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var ok bool
		if cached, ok = g.b.CachedIndexes("shell/curl", "latest"); ok {
			break
		}
	}
	if len(cached) != 2 || cached[0].Digest != ds[0].Digest {
		t.Errorf("after a restart, CachedIndexes = %v", cached)
	}
	if nx2.Runs.Load() != 0 {
		t.Errorf("Nix ran %d times after the restart", nx2.Runs.Load())
	}

	// A dropped member takes the memoised index with it.
	img := g.b.index.forRequest(g.b.keyOf("fake-set", "fake-0", SystemARM64, []string{"bash"}).request([]string{"bashInteractive", "cacert", "coreutils", "curl", "iana-etc", "moreutils", "nano"}))
	if img == nil {
		t.Fatal("no arm64 member in the index")
	}
	g.b.index.drop(img, "test", false)
	if _, ok := g.b.CachedIndexes("shell/curl", "latest"); ok {
		t.Error("CachedIndexes answers with a dropped member")
	}
	// Once the collection deleted the dropped member's manifest, the
	// indexes that the amd64 member still keeps are not served by digest
	// (a client would find no manifest for arm64), while the amd64 member
	// is; asked for by name, the member is built again and so are they.
	for _, d := range ds { // both formats' arm64 manifests
		idx, err := v1.ParseIndexManifest(bytes.NewReader(d.Data))
		if err != nil {
			t.Fatal(err)
		}
		arm := idx.Manifests[1].Digest
		if err := g.store.Delete(ctx, arm); err != nil {
			t.Fatal(err)
		}
		if _, err := g.b.Manifest(ctx, arm); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the dropped member's manifest: %v", err)
		}
		if got, err := g.b.Manifest(ctx, d.Digest); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(fmt.Sprint(err), arm.String()) {
			t.Errorf("index %s with a member gone: %s, %v; want an error naming the member", d.Digest, got.MediaType, err)
		}
		if _, err := g.b.Manifest(ctx, idx.Manifests[0].Digest); err != nil {
			t.Errorf("the amd64 member: %v", err)
		}
	}
	again2, err := g.b.Indexes(ctx, "shell/curl", "latest")
	if err != nil || again2[0].Digest != ds[0].Digest {
		t.Fatalf("Indexes after the drop = %v, %v; want %s again", again2, err, ds[0].Digest)
	}
	for _, d := range ds {
		if _, err := g.b.Manifest(ctx, d.Digest); err != nil {
			t.Errorf("index %s once rebuilt: %v", d.Digest, err)
		}
	}
}

// TestIndexesSystemError: where the source cannot build a system at all,
// a name has no index and the amd64 image is served alone; a member whose
// build fails fails the index, and the error names its system.
func TestIndexesSystemError(t *testing.T) {
	f := newFixture(t, nil, nil, "") // the fake builds x86_64-linux only
	ds, err := f.b.Indexes(t.Context(), "curl", "latest")
	if err != nil || ds != nil {
		t.Fatalf("Indexes(curl) where aarch64-linux is unsupported = %v, %v; want no index", ds, err)
	}
	if _, err := f.b.Manifests(t.Context(), "curl", "latest"); err != nil {
		t.Errorf("Manifests(curl): %v", err)
	}
	failing := newFixture(t, &fakenix.Nix{
		Systems:   []string{SystemARM64},
		SystemErr: map[string]error{SystemARM64: &nix.BuildError{Op: "build", Err: errors.New("exit status 1"), Log: "error: builder failed"}},
	}, nil, "")
	if _, err := failing.b.Indexes(t.Context(), "curl", "latest"); err == nil || errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "aarch64-linux") {
		t.Fatalf("err = %v, want the failed build naming aarch64-linux", err)
	}
	// Unknown packages are the error of the first member, as for a
	// single image.
	_, err = f.b.Indexes(t.Context(), "curl/nosuchpkg", "latest")
	if err == nil || strings.Contains(err.Error(), "aarch64") || !strings.Contains(err.Error(), "nosuchpkg") {
		t.Errorf("err = %v, want the unknown package alone", err)
	}
}
