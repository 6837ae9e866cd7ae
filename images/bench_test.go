package images

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/closure"
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

// discardWriter is a reusable http.ResponseWriter that throws the body
// away, so that handler benchmarks measure the handler only.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkReferrers compares a cached referrers request with a cached
// manifest request of the same image (issue 13's target: within 1.25x of
// its median). Each iteration times a batch of manifest requests and then
// a batch of referrers requests, so that both see the same load; the
// medians of the batches' per-request times and their ratio are reported
// (manifest-ns, referrers-ns, referrers/manifest). "handler" calls the
// registry's handler directly, "http" goes over loopback HTTP.
func BenchmarkReferrers(b *testing.B) {
	f := newFixture(b, nil, nil, "")
	img, err := f.b.Image(b.Context(), "shell/curl", "latest")
	if err != nil {
		b.Fatal(err)
	}
	reg := registry.New(f.b, registry.WithLogger(slog.New(slog.DiscardHandler)))
	defer reg.Close()
	paths := [2]string{
		"/v2/shell/curl/manifests/latest",
		"/v2/shell/curl/referrers/" + img.Manifests()[0].Digest.String(),
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	for _, c := range []struct {
		name  string
		batch int
		get   func(path string)
	}{
		{"handler", 200, func() func(string) {
			w := &discardWriter{h: http.Header{}}
			reqs := map[string]*http.Request{}
			for _, p := range paths {
				reqs[p] = httptest.NewRequest("GET", p, nil)
			}
			return func(p string) {
				clear(w.h)
				reg.ServeHTTP(w, reqs[p])
			}
		}()},
		{"http", 20, func(p string) {
			resp, err := srv.Client().Get(srv.URL + p)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var times [2][]float64
			for b.Loop() {
				for k, p := range paths {
					start := time.Now()
					for range c.batch {
						c.get(p)
					}
					times[k] = append(times[k], float64(time.Since(start).Nanoseconds())/float64(c.batch))
				}
			}
			m, r := median(times[0]), median(times[1])
			b.ReportMetric(m, "manifest-ns")
			b.ReportMetric(r, "referrers-ns")
			b.ReportMetric(r/m, "referrers/manifest")
		})
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSBOM measures generating the SBOM of a closure of n store paths
// (a chain, each path referencing every earlier one up to 8 back).
func BenchmarkSBOM(b *testing.B) {
	for _, n := range []int{40, 400} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var paths []closure.Path
			for i := range n {
				p := closure.Path{Path: fmt.Sprintf("/nix/store/%032d-pkg%d-1.%d", i, i, i), NarSize: 1000, NarHash: fakenix.NarHash(fmt.Sprint(i))}
				for j := max(0, i-8); j < i; j++ {
					p.References = append(p.References, fmt.Sprintf("/nix/store/%032d-pkg%d-1.%d", j, j, j))
				}
				paths = append(paths, p)
			}
			g, err := closure.New(paths, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sbomFor("bench", "key", g); err != nil {
					b.Fatal(err)
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
