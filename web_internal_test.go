package nixery

// Unit tests and benchmarks of the landing page, the JSON endpoints and
// the metrics over package images' Builder with Nix and the layer builder
// faked (internal/testutil/fakenix); the end-to-end tests in cmd/nixery
// run the same handlers against a real `nixery serve`, real Nix and a real
// Chromium.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/internal/testutil/memstore"
	"github.com/nixery-go/nixery/nix"
)

// fakeBackend is the Nix side of a Server over fakenix.
type fakeBackend struct {
	*fakenix.Nix
	popReady bool
	nixErr   error
}

func (f *fakeBackend) PopularityReady() bool { return f.popReady }
func (f *fakeBackend) CheckNix() error       { return f.nixErr }
func (f *fakeBackend) Packages(context.Context) ([]nix.PackageInfo, error) {
	var out []nix.PackageInfo
	for name := range fakenix.Packages {
		out = append(out, nix.PackageInfo{Attr: name, Version: "1.0"})
	}
	slices.SortFunc(out, func(a, b nix.PackageInfo) int { return strings.Compare(a.Attr, b.Attr) })
	return out, nil
}

type fakeSource struct{}

func (fakeSource) CacheKey(string) (string, bool, error) { return "fake", true, nil }
func (fakeSource) Import(string) (nix.Import, error)     { return nix.Import{}, nil }
func (fakeSource) String() string                        { return "fake package set" }

// newFakeServer returns a Server over fakenix.
func newFakeServer(t testing.TB) (*Server, *fakeBackend) {
	t.Helper()
	store := memstore.New()
	nx := &fakeBackend{Nix: &fakenix.Nix{}, popReady: true}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ib, err := images.New(t.Context(), images.Config{
		Nix: nx.Nix, Layers: &fakenix.Layers{Store: store}, Store: store,
		StoreFS: fakenix.StoreFS(), MaxLayers: 6, Logger: log, ScrubRate: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	s := newServer(ib, nx, fakeSource{}, newMetrics(ib, nil), storage, log)
	t.Cleanup(func() { s.Close() })
	return s, nx
}

// fakeNames returns n distinct image names of the fake package set.
func fakeNames(n int) []string {
	var pkgs []string
	for name := range fakenix.Packages {
		if !slices.Contains(images.AlwaysIncluded, name) {
			pkgs = append(pkgs, name)
		}
	}
	slices.Sort(pkgs)
	var names []string
	var pick func(start int, chosen []string, size int)
	pick = func(start int, chosen []string, size int) {
		if len(names) == n {
			return
		}
		if len(chosen) == size {
			names = append(names, strings.Join(chosen, "/"))
			return
		}
		for i := start; i < len(pkgs); i++ {
			pick(i+1, append(chosen, pkgs[i]), size)
		}
	}
	for size := 1; size <= len(pkgs) && len(names) < n; size++ {
		pick(0, nil, size)
	}
	return names
}

// fillHistory builds n images and fails n builds (unknown packages).
func fillHistory(t testing.TB, s *Server, n int) {
	t.Helper()
	names := fakeNames(n)
	if len(names) < n {
		t.Fatalf("only %d fake names", len(names))
	}
	for i, name := range names {
		if _, err := s.images.Image(t.Context(), name, "latest"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.images.Image(t.Context(), fmt.Sprintf("curl/nosuch%d", i), "latest"); err == nil {
			t.Fatal("an unknown package was built")
		}
	}
}

func get(t testing.TB, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Host = "registry.example:5000"
	h.ServeHTTP(rec, req)
	return rec
}

func TestPageShowsUsageBuildsAndErrors(t *testing.T) {
	s, _ := newFakeServer(t)
	fillHistory(t, s, 3)
	// The package listing starts with the first visit.
	first := get(t, s, "/").Body.String()
	if !strings.Contains(first, "docker pull registry.example:5000/shell/curl/jq") {
		t.Errorf("the page does not show how to pull from the request's host:\n%s", first)
	}
	waitPackages(t, s)
	rec := get(t, s, "/")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		"<code>shell</code>: adds <code>bashInteractive</code>, <code>coreutils</code>",
		"<code>arm64</code>",
		`<tr><td><code>curl</code></td><td>1.0</td></tr>`,
		`id="recent-builds"`, "curl/nosuch2", "unknown_packages", "nix: unknown packages: nosuch2",
		"/image/",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The search works without JavaScript.
	q := get(t, s, "/?q=zli").Body.String()
	if !strings.Contains(q, "<code>zlib</code>") || strings.Contains(q, "<code>curl</code></td><td>1.0") {
		t.Errorf("?q=zli does not filter the package list")
	}
	// A name with markup is escaped.
	if strings.Contains(get(t, s, "/?q=<script>").Body.String(), "<q><script>") {
		t.Error("the query is not escaped")
	}
}

func TestImagePageShowsLayersAndSharing(t *testing.T) {
	s, _ := newFakeServer(t)
	a, err := s.images.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.images.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	var info images.ImageInfo
	rec := get(t, s, "/api/images/"+b.Key)
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || rec.Code != 200 {
		t.Fatalf("GET /api/images: %d %v", rec.Code, err)
	}
	shared := 0
	for _, l := range info.Layers {
		if !l.Custom && len(l.Paths) == 0 {
			t.Errorf("layer %s has no store paths", l.Digest)
		}
		for _, p := range l.Paths {
			if p.Size <= 0 {
				t.Errorf("store path %s has no size", p.Path)
			}
		}
		for _, o := range l.SharedWith {
			if o.Key == a.Key {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Errorf("no layer of git's image is shared with curl's: %+v", info.Layers)
	}
	page := get(t, s, "/image/"+b.Key).Body.String()
	for _, want := range []string{"docker pull registry.example:5000/git<", fakenix.StorePath("openssl"), `href="/image/` + a.Key + `"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the image page lacks %q", want)
		}
	}
	if rec := get(t, s, "/image/"+strings.Repeat("0", 64)); rec.Code != http.StatusNotFound {
		t.Errorf("an unknown image's page is %d", rec.Code)
	}
}

func TestRoutesKeepTheRegistry(t *testing.T) {
	s, _ := newFakeServer(t)
	for path, want := range map[string]int{"/v2/": 200, "/nope": 404, "/v2/curl/tags/list": 200, "/healthz": 200, "/static/live.js": 200} {
		if rec := get(t, s, path); rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
	if body := get(t, s, "/nope").Body.String(); !strings.Contains(body, `"code":"NOT_FOUND"`) {
		t.Errorf("an unknown path is not the registry's 404: %s", body)
	}
}

func TestReadyz(t *testing.T) {
	s, nx := newFakeServer(t)
	if rec := get(t, s, "/readyz"); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ready":true`) {
		t.Errorf("GET /readyz = %d %s", rec.Code, rec.Body)
	}
	nx.popReady = false
	nx.nixErr = nix.ErrNixNotFound
	s.storage = filepath.Join(t.TempDir(), "file")
	os.WriteFile(s.storage, nil, 0o644) // a file, not a directory
	rec := get(t, s, "/readyz")
	var r Readiness
	json.Unmarshal(rec.Body.Bytes(), &r)
	if rec.Code != http.StatusServiceUnavailable || r.Ready || r.Checks["popularity"] == "ok" || r.Checks["storage"] == "ok" || !strings.Contains(r.Checks["nix"], "not installed") {
		t.Errorf("GET /readyz = %d %+v", rec.Code, r)
	}
	if rec := get(t, s, "/healthz"); rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Errorf("GET /healthz = %d %q", rec.Code, rec.Body)
	}
}

func TestMetricsCountBuilds(t *testing.T) {
	s, _ := newFakeServer(t)
	scrape := func() map[string]float64 {
		m, err := testutil.ParseMetrics(get(t, s, "/metrics").Body)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := scrape()
	get(t, s, "/v2/curl/manifests/latest")
	get(t, s, "/v2/curl/manifests/latest")
	get(t, s, "/v2/nosuch/manifests/latest")
	after := scrape()
	for k, want := range map[string]float64{
		"nixery_builds_started_total":                                             2,
		"nixery_builds_completed_total":                                           1,
		`nixery_builds_failed_total{cause="unknown_packages"}`:                    1,
		`nixery_build_duration_seconds_count{result="done"}`:                      1,
		`nixery_cache_misses_total{cache="manifests"}`:                            1,
		`nixery_cache_hits_total{cache="manifests"}`:                              1,
		`nixery_http_requests_total{method="GET",route="manifests",status="200"}`: 2,
		`nixery_http_requests_total{method="GET",route="manifests",status="404"}`: 1,
	} {
		if got := after[k] - before[k]; got != want {
			t.Errorf("%s grew by %v, want %v", k, got, want)
		}
	}
	if after["nixery_stored_bytes"] <= 0 {
		t.Error("nixery_stored_bytes is 0 after a build")
	}
}

// loopback serves s on 127.0.0.1 and returns a function that GETs path
// and reads the whole body.
func loopback(b *testing.B, s *Server) func(path string) int {
	ts := httptest.NewServer(s)
	b.Cleanup(ts.Close)
	client := ts.Client()
	return func(path string) int {
		resp, err := client.Get(ts.URL + path)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("GET %s = %d (%v)", path, resp.StatusCode, err)
		}
		return int(n)
	}
}

// historyServer is a fake server with 1,000 builds and 1,000 failures in
// its history and its package list ready.
func historyServer(b *testing.B) *Server {
	s, _ := newFakeServer(b)
	fillHistory(b, s, 1000)
	if done, failed := s.images.Recent(); len(done) != 1000 || len(failed) != 1000 {
		b.Fatalf("history of %d builds and %d failures", len(done), len(failed))
	}
	waitPackages(b, s)
	return s
}

// waitPackages waits until the page has the package list, which its
// first visit starts reading.
func waitPackages(t testing.TB, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := s.packages(); err == nil {
			return
		}
	}
	t.Fatal("the package list is not ready")
}

// BenchmarkPage1000Builds: the landing page's HTML over loopback with
// 1,000 recent builds and 1,000 recent errors in the history (target: under
// 50 ms).
func BenchmarkPage1000Builds(b *testing.B) {
	s := historyServer(b)
	get := loopback(b, s)
	n := get("/")
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		get("/")
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
}

// BenchmarkMetricsScrape: one scrape of /metrics over loopback, after
// 1,000 builds and 1,000 failures (target: under 5 ms).
func BenchmarkMetricsScrape(b *testing.B) {
	s := historyServer(b)
	get := loopback(b, s)
	for range 100 { // every route and status has its series
		get("/v2/")
	}
	b.SetBytes(int64(get("/metrics")))
	b.ResetTimer()
	for b.Loop() {
		get("/metrics")
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/scrape")
}
