package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// indexImages is fakeImages with indexes for "shell/curl" (and none for
// "hello", as for a name that selects its platform).
type indexImages struct {
	*fakeImages
	indexes map[string][]v1.Descriptor
	cached  bool // CachedIndexes answers
	built   atomic.Int64
}

func newIndexImages() *indexImages {
	f := &indexImages{fakeImages: newFakeImages(), indexes: map[string][]v1.Descriptor{}}
	list := desc(MediaTypeDockerManifestList, []byte(`{"schemaVersion":2,"mediaType":"`+MediaTypeDockerManifestList+`","manifests":[]}`))
	index := desc(MediaTypeOCIIndex, []byte(`{"schemaVersion":2,"mediaType":"`+MediaTypeOCIIndex+`","manifests":[]}`))
	f.indexes["shell/curl"] = []v1.Descriptor{list, index}
	return f
}

func (f *indexImages) Indexes(ctx context.Context, name, tag string) ([]v1.Descriptor, error) {
	f.built.Add(1)
	if err := f.errs[name]; err != nil {
		return nil, err
	}
	if _, ok := f.images[name]; !ok {
		return nil, fmt.Errorf("fake: unknown packages: %s: %w", name, fs.ErrNotExist)
	}
	return f.indexes[name], nil
}

func (f *indexImages) CachedIndexes(name, tag string) ([]v1.Descriptor, bool) {
	ds, ok := f.indexes[name]
	return ds, ok && f.cached
}

func (f *indexImages) Manifest(ctx context.Context, h v1.Hash) (v1.Descriptor, error) {
	for _, ds := range f.indexes {
		for _, d := range ds {
			if d.Digest == h {
				return d, nil
			}
		}
	}
	return f.fakeImages.Manifest(ctx, h)
}

// TestIndexNegotiation: a client that accepts an index gets the one it
// prefers; one that accepts only manifests, or asks for a name without an
// index, gets the image's manifest.
func TestIndexNegotiation(t *testing.T) {
	f := newIndexImages()
	reg := New(f, WithLogger(slog.New(slog.NewTextHandler(&testutil.SyncBuffer{}, nil))))
	srv := httptest.NewServer(reg)
	t.Cleanup(func() { srv.Close(); reg.Close() })
	list, index := f.indexes["shell/curl"][0], f.indexes["shell/curl"][1]
	docker := f.images["shell/curl"][0]
	dockerAccept := acceptDocker + ", " + MediaTypeDockerManifestList + ", " + MediaTypeOCIIndex + ", " + acceptOCI
	for _, tc := range []struct {
		name, accept string
		want         v1.Descriptor
	}{
		{"shell/curl", dockerAccept, list},
		{"shell/curl", MediaTypeOCIIndex, index},
		{"shell/curl", MediaTypeDockerManifestList + ";q=0.5, " + MediaTypeOCIIndex, index},
		{"shell/curl", acceptOCI + ", " + MediaTypeOCIIndex + ";q=0", f.images["shell/curl"][1]},
		{"shell/curl", acceptDocker, docker},
		{"shell/curl", "", docker},
		{"hello", dockerAccept, f.images["hello"][0]},
	} {
		for _, cached := range []bool{false, true} {
			f.cached = cached
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				r := testutil.Do(t, srv.Client(), method, srv.URL+"/v2/"+tc.name+"/manifests/latest", map[string]string{"Accept": tc.accept})
				if r.Status != 200 || r.Header.Get("Content-Type") != string(tc.want.MediaType) || r.Header.Get("Docker-Content-Digest") != tc.want.Digest.String() {
					t.Errorf("%s %s Accept %q (cached %v): %d %s %s; want %s %s", method, tc.name, tc.accept, cached, r.Status, r.Header.Get("Content-Type"), r.Header.Get("Docker-Content-Digest"), tc.want.MediaType, tc.want.Digest)
				}
			}
		}
	}
	// By digest, whatever Accept says.
	r := testutil.Do(t, srv.Client(), http.MethodGet, srv.URL+"/v2/shell/curl/manifests/"+index.Digest.String(), map[string]string{"Accept": acceptDocker})
	if r.Status != 200 || r.Header.Get("Content-Type") != MediaTypeOCIIndex || string(r.Body) != string(index.Data) {
		t.Errorf("GET the index by digest: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	// An error building the index is the registry's error.
	f.cached = false
	f.errs["shell/curl"] = fmt.Errorf("nix: unsupported system aarch64-linux: %w", errors.ErrUnsupported)
	r = testutil.Do(t, srv.Client(), http.MethodGet, srv.URL+"/v2/shell/curl/manifests/latest", map[string]string{"Accept": dockerAccept})
	if code, msg := r.RegistryError(t); r.Status/100 != 4 || code == "" || !strings.Contains(msg, "aarch64-linux") {
		t.Errorf("a failed index: %d %s %q", r.Status, code, msg)
	}
}
