package main

// End-to-end tests of what `nixery serve` offers beside the registry API:
// health and readiness, Prometheus metrics around a real build, build
// progress as Server-Sent Events, and the landing page in a real headless
// Chromium (web_chromium_test.go). Nix builds for real; each test has a
// server of its own with a fresh storage directory, so its images are
// cold: their layers are compressed while the test watches.

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// scrape fetches /metrics and parses it with Prometheus' text parser.
func scrape(t testing.TB, srv *testutil.Nixery) map[string]float64 {
	t.Helper()
	resp, err := srv.Client.Get(srv.URL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	m, err := testutil.ParseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWebHealthE2E(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store")
	srv := testutil.ServeNixery(t, testutil.NixeryOptions{})
	r := testutil.Do(t, srv.Client, "GET", srv.URL("/healthz"), nil)
	if r.Status != 200 || string(r.Body) != "ok\n" {
		t.Errorf("GET /healthz = %d %q", r.Status, r.Body)
	}
	// The popularity of the bundled set is computed (or read) at start;
	// the server is ready once it is known.
	var ready struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		r = testutil.Do(t, srv.Client, "GET", srv.URL("/readyz"), nil)
		if err := json.Unmarshal(r.Body, &ready); err != nil {
			t.Fatalf("GET /readyz: %q: %v", r.Body, err)
		}
		if r.Status == 200 || time.Now().After(deadline) {
			break
		}
		if r.Status != http.StatusServiceUnavailable || ready.Checks["popularity"] == "ok" {
			t.Fatalf("GET /readyz before ready = %d %+v", r.Status, ready)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.Status != 200 || !ready.Ready || ready.Checks["nix"] != "ok" || ready.Checks["storage"] != "ok" || ready.Checks["popularity"] != "ok" {
		t.Errorf("GET /readyz = %d %+v", r.Status, ready)
	}
}

func TestMetricsAroundABuildE2E(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store")
	srv := testutil.ServeNixery(t, testutil.NixeryOptions{})
	before := scrape(t, srv)

	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	m, err := testutil.GetManifest(ctx, srv.Client, srv.URL("/v2/hello/manifests/latest"), mediaDockerManifest)
	if err != nil {
		t.Fatal(err)
	}
	blob := testutil.Do(t, srv.Client, "GET", srv.URL("/v2/hello/blobs/"+m.Layers[0].Digest.String()), nil)
	if blob.Status != 200 {
		t.Fatalf("GET a layer = %d", blob.Status)
	}
	if _, err := testutil.GetManifest(ctx, srv.Client, srv.URL("/v2/hello/manifests/latest"), mediaDockerManifest); err != nil {
		t.Fatal(err)
	}
	unknown := testutil.Do(t, srv.Client, "GET", srv.URL("/v2/hello/nosuchpackage/manifests/latest"), nil)
	if unknown.Status != 404 {
		t.Fatalf("GET an unknown package = %d", unknown.Status)
	}
	after := scrape(t, srv)
	grew := func(k string) float64 { return after[k] - before[k] }

	for k, want := range map[string]float64{
		"nixery_builds_started_total":                                             2,
		"nixery_builds_completed_total":                                           1,
		`nixery_builds_failed_total{cause="unknown_packages"}`:                    1,
		`nixery_build_duration_seconds_count{result="done"}`:                      1,
		`nixery_build_duration_seconds_count{result="failed"}`:                    1,
		`nixery_cache_misses_total{cache="manifests"}`:                            1,
		`nixery_cache_hits_total{cache="manifests"}`:                              1,
		`nixery_http_requests_total{method="GET",route="manifests",status="200"}`: 2,
		`nixery_http_requests_total{method="GET",route="manifests",status="404"}`: 1,
		`nixery_http_requests_total{method="GET",route="blobs",status="200"}`:     1,
		`nixery_served_bytes_total{route="blobs"}`:                                float64(len(blob.Body)),
		"nixery_builds_queued":                                                    0,
		"nixery_builds_in_progress":                                               0,
	} {
		if got := grew(k); got != want {
			t.Errorf("%s grew by %v, want %v", k, got, want)
		}
	}
	for _, k := range []string{
		`nixery_cache_misses_total{cache="layers"}`, `nixery_cache_misses_total{cache="members"}`,
		"nixery_compressed_bytes_total", "nixery_stored_bytes",
		`nixery_nix_runs_total{op="evaluate",result="ok"}`, `nixery_nix_run_duration_seconds_count{op="evaluate"}`,
		`nixery_nix_run_duration_seconds_sum{op="evaluate"}`,
	} {
		if grew(k) <= 0 {
			t.Errorf("%s did not grow (before %v, after %v)", k, before[k], after[k])
		}
	}
	if after["nixery_build_duration_seconds_sum{result=\"done\"}"] <= 0 {
		t.Error("the build's duration is not in the histogram")
	}
	if stored, layers := after["nixery_stored_bytes"], float64(m.LayerBytes()); stored < layers {
		t.Errorf("nixery_stored_bytes %v < the image's layers %v", stored, layers)
	}
}

// buildEvent is the part of an /events datum the tests read.
type buildEvent struct {
	Build   uint64  `json:"build"`
	Name    string  `json:"name"`
	Phase   string  `json:"phase"`
	Done    int64   `json:"done"`
	Total   int64   `json:"total"`
	Seconds float64 `json:"seconds"`
	Repeat  bool    `json:"repeat"`
	Key     string  `json:"key"`
	Layers  int     `json:"layers"`
	Status  string  `json:"status"`
}

// followEvents reads /events until ctx ends, sending each datum with the
// time it arrived.
func followEvents(ctx context.Context, t testing.TB, srv *testutil.Nixery, out chan<- timedEvent) {
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL("/events"), nil)
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Error(err)
		close(out)
		return
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("GET /events = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out <- timedEvent{} // connected
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e buildEvent
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				t.Errorf("an event that is not JSON: %q", data)
				return
			}
			out <- timedEvent{time.Now(), e}
		}
	}()
}

type timedEvent struct {
	at time.Time
	buildEvent
}

func TestEventsOfAColdBuildE2E(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store")
	srv := testutil.ServeNixery(t, testutil.NixeryOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	events := make(chan timedEvent, 1024)
	followEvents(ctx, t, srv, events)
	<-events

	built := make(chan error, 1)
	go func() {
		_, err := testutil.GetManifest(ctx, srv.Client, srv.URL("/v2/shell/git/manifests/latest"), mediaDockerManifest)
		built <- err
	}()
	var got []timedEvent
	for e := range events {
		got = append(got, e)
		if e.Phase == "done" || e.Phase == "failed" {
			break
		}
	}
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	cancel()
	if len(got) == 0 || got[len(got)-1].Phase != "done" {
		t.Fatalf("the events did not end with done: %+v", got)
	}
	last := got[len(got)-1]
	if !strings.Contains(last.Name, "git") || last.Key == "" || last.Layers == 0 {
		t.Errorf("the last event lacks the image: %+v", last)
	}
	// The phases come in order, and compressing counts up to its total.
	order := []string{"queued", "evaluating", "realising", "grouping", "compressing", "writing", "done"}
	var phases []string
	repeats := 0
	var maxGap time.Duration
	for i, e := range got {
		if e.Build != last.Build {
			t.Errorf("an event of another build: %+v", e)
		}
		if len(phases) == 0 || phases[len(phases)-1] != e.Phase {
			phases = append(phases, e.Phase)
		}
		if e.Repeat {
			repeats++
		}
		if e.Phase == "compressing" && (e.Total <= 0 || e.Done > e.Total || !strings.HasPrefix(e.Status, "compressing ")) {
			t.Errorf("compressing progress %d of %d (%q)", e.Done, e.Total, e.Status)
		}
		if i > 0 {
			maxGap = max(maxGap, e.at.Sub(got[i-1].at))
		}
	}
	if strings.Join(phases, " ") != strings.Join(order, " ") {
		t.Errorf("phases %v, want %v", phases, order)
	}
	if repeats == 0 {
		t.Error("no build progress was re-sent while a phase lasted")
	}
	t.Logf("%d events over %.1f s, the longest gap between two %v", len(got), last.Seconds, maxGap.Round(time.Millisecond))

	// The build is in the history.
	var builds struct {
		Recent []buildEvent `json:"recent"`
	}
	r := testutil.Do(t, srv.Client, "GET", srv.URL("/api/builds"), nil)
	if err := json.Unmarshal(r.Body, &builds); err != nil || len(builds.Recent) != 1 || builds.Recent[0].Key != last.Key {
		t.Errorf("GET /api/builds: %s (%v)", r.Body, err)
	}
}
