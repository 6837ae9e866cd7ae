package images

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nixery-go/nixery/registry"
)

// nopResponse is a ResponseWriter that discards, so that the benchmarks
// measure the handler alone.
type nopResponse struct{ h http.Header }

func (n *nopResponse) Header() http.Header         { return n.h }
func (n *nopResponse) Write(p []byte) (int, error) { return len(p), nil }
func (n *nopResponse) WriteHeader(int)             {}

// BenchmarkCachedManifest is the hot path of `nixery serve`: a GET of a
// manifest by tag for a cached image of a pinned source, through the
// registry and the builder, with the request log line formatted (to
// io.Discard) as in production.
func BenchmarkCachedManifest(b *testing.B) {
	f := newFixture(b, nil, nil, "")
	reg := registry.New(f.b, registry.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer reg.Close()
	req := httptest.NewRequest("GET", "/v2/shell/curl/manifests/latest", nil)
	w := &nopResponse{h: http.Header{}}
	reg.ServeHTTP(w, req) // builds the image
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		reg.ServeHTTP(w, req)
	}
}
