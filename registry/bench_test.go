package registry

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// nopResponse is a ResponseWriter that discards, so that the benchmarks
// measure the handler alone.
type nopResponse struct{ h http.Header }

func (n *nopResponse) Header() http.Header         { return n.h }
func (n *nopResponse) Write(p []byte) (int, error) { return len(p), nil }
func (n *nopResponse) WriteHeader(int)             {}

// buildCached builds the shell/curl image through a real server, so that
// the benchmarks after it measure the cached path.
func buildCached(b *testing.B, h http.Handler) {
	b.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/shell/curl/manifests/latest")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatal(resp.Status)
	}
}

// serveLoop serves GET /v2/shell/curl/manifests/latest with h, b.N times.
func serveLoop(b *testing.B, h http.Handler) {
	req := httptest.NewRequest("GET", "/v2/shell/curl/manifests/latest", nil)
	w := &nopResponse{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkCachedManifest is the hot path: GET of a manifest by tag for a
// pinned image that is cached, with the request log line formatted (to
// io.Discard) as in production.
func BenchmarkCachedManifest(b *testing.B) {
	f := newFixture(b, fakeSource{}, nil, "")
	f.reg.log = slog.New(slog.NewTextHandler(io.Discard, nil)) // before any request
	buildCached(b, f.reg)
	serveLoop(b, f.reg)
}

// BenchmarkBareManifest is the same bytes from a bare handler, for
// comparison.
func BenchmarkBareManifest(b *testing.B) {
	body := make([]byte, 1400)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Type", MediaTypeDockerManifest)
		hd.Set("Content-Length", "1400")
		hd.Set("Docker-Content-Digest", "sha256:0000000000000000000000000000000000000000000000000000000000000000")
		w.Write(body)
	})
	serveLoop(b, h)
}

// BenchmarkCachedManifestNoLog is BenchmarkCachedManifest without the
// request log, to show what the log line costs.
func BenchmarkCachedManifestNoLog(b *testing.B) {
	f := newFixture(b, fakeSource{}, nil, "")
	f.reg.log = slog.New(slog.DiscardHandler) // before any request
	buildCached(b, f.reg)
	serveLoop(b, f.reg)
}

// BenchmarkCachedManifestParallel is BenchmarkCachedManifest from many
// goroutines, logging to a file through a LogBuffer as the server does to
// standard error.
func BenchmarkCachedManifestParallel(b *testing.B) {
	f := newFixture(b, fakeSource{}, nil, "")
	logf, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	logs := NewLogBuffer(logf)
	defer logs.Close()
	f.reg.log = slog.New(slog.NewTextHandler(logs, nil)) // before any request
	buildCached(b, f.reg)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/v2/shell/curl/manifests/latest", nil)
		w := &nopResponse{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			f.reg.ServeHTTP(w, req)
		}
	})
}
