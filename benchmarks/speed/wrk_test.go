package speed

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

func TestParseWrk(t *testing.T) {
	data, err := os.ReadFile("testdata/wrk-200.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseWrk(data)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{
		Requests: 104775, RequestsPerSec: 52170.55, BytesPerSec: 55.67 * (1 << 20),
		P50: 1060 * time.Microsecond, P75: 2310 * time.Microsecond,
		P90: 3920 * time.Microsecond, P99: 7290 * time.Microsecond,
	}
	if *r != want {
		t.Errorf("ParseWrk =\n%+v\nwant\n%+v", *r, want)
	}

	data, err = os.ReadFile("testdata/wrk-errors.txt")
	if err != nil {
		t.Fatal(err)
	}
	if r, err = ParseWrk(data); err != nil {
		t.Fatal(err)
	}
	if r.NonSuccess != 50722 || r.SocketErrors != 5 || r.P50 != 129*time.Microsecond || r.P90 != 2150*time.Microsecond {
		t.Errorf("ParseWrk(errors) = %+v", *r)
	}

	for _, bad := range []string{
		"",
		strings.Replace(string(data), "     50%  129.00us\n", "", 1),
		strings.Replace(string(data), "129.00us", "129.00xs", 1),
		strings.Replace(string(data), "49.43MB", "49.43QB", 1),
		strings.Replace(string(data), "Requests/sec:  46028.27", "", 1),
	} {
		if _, err := ParseWrk([]byte(bad)); !errors.Is(err, ErrWrkOutput) {
			t.Errorf("ParseWrk(%.40q...) error = %v, want ErrWrkOutput", bad, err)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	for _, name := range []string{"testdata/wrk-200.txt", "testdata/wrk-errors.txt"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseWrk(data)
		if err != nil {
			if !errors.Is(err, ErrWrkOutput) {
				t.Fatalf("error does not wrap ErrWrkOutput: %v", err)
			}
			return
		}
		if r.P50 < 0 || r.BytesPerSec < 0 {
			t.Fatalf("negative figures: %+v", r)
		}
	})
}

// TestManifestLatency runs real wrk against a handler serving a manifest
// and against the bare baseline.
func TestManifestLatency(t *testing.T) {
	testutil.RequireTools(t, "wrk")
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`)
	var hits, badAccept atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/vnd.docker.distribution.manifest.v2+json" {
			badAccept.Add(1)
			http.Error(w, "want a Docker Accept header", http.StatusNotAcceptable)
			return
		}
		hits.Add(1)
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		w.Header().Set("Docker-Content-Digest", "sha256:0000")
		w.Write(body)
	}))
	defer srv.Close()
	c, err := ManifestLatency(context.Background(), WrkOptions{
		URL:      srv.URL + "/v2/shell/manifests/latest",
		Duration: time.Second,
		Header:   http.Header{"Accept": {"application/vnd.docker.distribution.manifest.v2+json"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Bytes != int64(len(body)) {
		t.Errorf("Bytes = %d, want %d", c.Bytes, len(body))
	}
	for _, r := range []*WrkResult{c.Server, c.Baseline} {
		if r.Requests < 100 || r.RequestsPerSec <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Connections != 64 {
			t.Errorf("implausible result %+v", *r)
		}
	}
	if badAccept.Load() > 0 || hits.Load() < c.Server.Requests {
		t.Errorf("server saw %d requests (%d without the Accept header), wrk reported %d", hits.Load(), badAccept.Load(), c.Server.Requests)
	}
	if c.RequestsRatio() <= 0 || c.MedianRatio() <= 0 {
		t.Errorf("ratios %v %v", c.RequestsRatio(), c.MedianRatio())
	}

	// A failing server is an error, not a figure.
	bad := httptest.NewServer(http.NotFoundHandler())
	defer bad.Close()
	if _, err := ManifestLatency(context.Background(), WrkOptions{URL: bad.URL, Duration: time.Second}); err == nil {
		t.Error("ManifestLatency of a 404 succeeded")
	}
}

// TestCompare checks the order of the runs (warm-up, then rounds that
// alternate which side goes first) by watching which handler the requests
// reach, and that the baseline is asked for the server's path.
func TestCompare(t *testing.T) {
	testutil.RequireTools(t, "wrk")
	const path = "/v2/x/manifests/latest"
	var (
		mu       sync.Mutex
		sides    []string // runs of requests to the same side, in order
		counts   []int64  // requests in each
		badPaths int
	)
	handler := func(side string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if r.URL.Path != path {
				badPaths++
			}
			if len(sides) == 0 || sides[len(sides)-1] != side {
				sides, counts = append(sides, side), append(counts, 0)
			}
			counts[len(counts)-1]++
			mu.Unlock()
			w.Write([]byte("hello"))
		})
	}
	srv := httptest.NewServer(handler("S"))
	defer srv.Close()
	const conns = 4
	c, err := Compare(context.Background(), WrkOptions{
		URL: srv.URL + path, Connections: conns, Duration: time.Second, Warmup: time.Second, Rounds: 2,
	}, handler("B"), 5)
	if err != nil {
		t.Fatal(err)
	}
	// wrk has exited: the handlers are idle.
	mu.Lock()
	defer mu.Unlock()
	// Warm-up B, S; round 0 B, S; round 1 S, B (the two S runs meet).
	if got := strings.Join(sides, " "); got != "B S B S B" || badPaths > 0 {
		t.Fatalf("runs reached %q with %d requests on a wrong path, want \"B S B S B\"", got, badPaths)
	}
	// A request in flight when wrk stops reaches the handler but is not
	// counted by wrk: at most one per connection and run.
	for _, side := range []struct {
		r    *WrkResult
		hits int64
	}{{c.Server, counts[3]}, {c.Baseline, counts[2] + counts[4]}} {
		if side.r.Requests > side.hits || side.r.Requests < side.hits-2*conns {
			t.Errorf("wrk counted %d requests, the handler saw %d", side.r.Requests, side.hits)
		}
		if side.r.Duration != 2*time.Second || side.r.Connections != conns || side.r.P50 <= 0 || side.r.RequestsPerSec <= 0 {
			t.Errorf("combined result %+v", *side.r)
		}
	}
	if c.Bytes != 5 {
		t.Errorf("Bytes = %d", c.Bytes)
	}
}

// TestCompareFailure checks that a failing side is an error, not a figure.
func TestCompareFailure(t *testing.T) {
	testutil.RequireTools(t, "wrk")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer srv.Close()
	_, err := Compare(context.Background(), WrkOptions{URL: srv.URL + "/", Connections: 2, Duration: time.Second}, http.NotFoundHandler(), 5)
	if err == nil || !strings.Contains(err.Error(), "not 2xx or 3xx") {
		t.Errorf("Compare against a 404 baseline: %v", err)
	}
}

func TestCombine(t *testing.T) {
	c := combine([]*WrkResult{
		{Requests: 100, RequestsPerSec: 100, BytesPerSec: 1000, Duration: time.Second, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond, SocketErrors: 1, Connections: 8},
		{Requests: 900, RequestsPerSec: 300, BytesPerSec: 3000, Duration: 3 * time.Second, P50: 4 * time.Millisecond, P99: 30 * time.Millisecond, NonSuccess: 2, Connections: 8},
	})
	want := WrkResult{
		Requests: 1000, RequestsPerSec: 250, BytesPerSec: 2500, Duration: 4 * time.Second,
		P50: 3500 * time.Microsecond, P99: 25 * time.Millisecond, SocketErrors: 1, NonSuccess: 2, Connections: 8,
	}
	if *c != want {
		t.Errorf("combine =\n%+v\nwant\n%+v", *c, want)
	}
}
