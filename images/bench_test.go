package images

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/registry"
)

// storeImages serves blobs straight from a store, unverified: what Blob
// did before verification, the baseline of BenchmarkBlobGET.
type storeImages struct {
	registry.Images
	store layers.BlobStore
}

func (s storeImages) Blob(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error) {
	n, err := s.store.Stat(ctx, h)
	if err != nil {
		return nil, 0, err
	}
	rc, err := s.store.Open(ctx, h)
	return rc, n, err
}

// BenchmarkBlobGET measures a GET of a 16 MiB blob over loopback HTTP:
// "store" serves the store's file unverified, "verified" through
// Builder.Blob once the blob was verified (an fstat and a map lookup more;
// still sendfile), "first" the first GET after the file changed (a sha256
// pass before the bytes go out).
func BenchmarkBlobGET(b *testing.B) {
	f := newFixture(b, nil, nil, "")
	data := make([]byte, 16<<20)
	rand.Read(data)
	h, err := layers.Put(b.Context(), f.store, data)
	if err != nil {
		b.Fatal(err)
	}
	quiet := registry.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, c := range []struct {
		name   string
		images registry.Images
		forget bool
	}{
		{"store", storeImages{f.b, f.store}, false},
		{"verified", f.b, false},
		{"first", f.b, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			reg := registry.New(c.images, quiet)
			defer reg.Close()
			srv := httptest.NewServer(reg)
			defer srv.Close()
			url := srv.URL + "/v2/x/blobs/" + h.String()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if c.forget {
					f.b.verifier.Forget(h)
				}
				resp, err := srv.Client().Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(len(data)) {
					b.Fatalf("%d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}

// BenchmarkCachedIndex compares, over loopback HTTP through the registry,
// a GET by tag of a cached image's manifest (a client that accepts only
// manifests) with that of its cached image index (a client that accepts
// indexes, as Docker does). Target: the index within 1.25x of the
// manifest.
func BenchmarkCachedIndex(b *testing.B) {
	f := newFixture(b, &fakenix.Nix{Systems: []string{SystemARM64}}, nil, "")
	if _, err := f.b.Indexes(b.Context(), "shell/curl", "latest"); err != nil {
		b.Fatal(err)
	}
	reg := registry.New(f.b, registry.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer reg.Close()
	srv := httptest.NewServer(reg)
	defer srv.Close()
	for _, c := range []struct{ name, accept, want string }{
		{"manifest", MediaTypeDockerManifest + ", " + MediaTypeOCIManifest, MediaTypeDockerManifest},
		{"index", MediaTypeDockerManifest + ", " + MediaTypeDockerManifestList + ", " + MediaTypeOCIIndex + ", " + MediaTypeOCIManifest, MediaTypeDockerManifestList},
	} {
		b.Run(c.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/shell/curl/manifests/latest", nil)
			req.Header.Set("Accept", c.accept)
			client := srv.Client()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.want {
					b.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
				}
			}
		})
	}
}
