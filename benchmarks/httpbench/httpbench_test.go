package httpbench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/benchmarks/speed"
	"github.com/nixery-go/nixery/internal/testutil"
)

// TestShortRuns runs both measurements for a second each, with a small
// blob: it checks the plumbing (registry, baselines, wrk), not the speed.
func TestShortRuns(t *testing.T) {
	testutil.RequireTools(t, "wrk")
	opts := Options{Duration: time.Second, Connections: 4, BlobConnections: 2, Rounds: 1, BlobSize: 1 << 20}
	m, err := Manifest(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "manifest" || m.Bytes < 200 {
		t.Errorf("manifest: %q, %d-byte body", m.Name, m.Bytes)
	}
	checkSides(t, m, opts.Connections)
	b, err := Blob(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "blob" || b.Bytes != opts.BlobSize {
		t.Errorf("blob: %q, %d-byte body", b.Name, b.Bytes)
	}
	checkSides(t, b, opts.BlobConnections)
	// Every response is the whole blob: bytes read cover the bodies,
	// give or take wrk's rounding of its rates.
	for _, r := range []*speed.WrkResult{b.Server, b.Baseline} {
		if r.BytesPerSec < 0.95*r.RequestsPerSec*float64(opts.BlobSize) {
			t.Errorf("blob: %.0f bytes/s read at %.2f requests/s of %d bytes", r.BytesPerSec, r.RequestsPerSec, opts.BlobSize)
		}
	}
	s := m.String() + b.String()
	if !strings.HasPrefix(s, "manifest (") || !strings.Contains(s, "\nblob (1048576-byte body):\n  registry ") {
		t.Errorf("String:\n%s", s)
	}
	t.Logf("\n%s", s)
}

// checkSides checks both sides of r, measured with conns connections in
// one round of a second.
func checkSides(t *testing.T, r Result, conns int) {
	t.Helper()
	for _, x := range []*speed.WrkResult{r.Server, r.Baseline} {
		if x.Requests == 0 || x.Connections != conns || x.Duration != time.Second || x.P50 <= 0 || x.P99 < x.P50 || x.NonSuccess+x.SocketErrors != 0 {
			t.Errorf("%s: implausible figures %+v", r.Name, *x)
		}
	}
}

func TestTargets(t *testing.T) {
	side := func(rps, mbps float64, p50 time.Duration) *speed.WrkResult {
		return &speed.WrkResult{RequestsPerSec: rps, BytesPerSec: mbps * 1e6, P50: p50}
	}
	for _, c := range []struct {
		r    Result
		want bool
	}{
		{Result{Name: "manifest", Comparison: speed.Comparison{Server: side(80, 1, 125*time.Microsecond), Baseline: side(100, 1, 100*time.Microsecond)}}, true},
		{Result{Name: "manifest", Comparison: speed.Comparison{Server: side(79, 1, 100*time.Microsecond), Baseline: side(100, 1, 100*time.Microsecond)}}, false},
		{Result{Name: "manifest", Comparison: speed.Comparison{Server: side(100, 1, 126*time.Microsecond), Baseline: side(100, 1, 100*time.Microsecond)}}, false},
		{Result{Name: "blob", Comparison: speed.Comparison{Server: side(1, 800, time.Second), Baseline: side(1, 1000, time.Millisecond)}}, true},
		{Result{Name: "blob", Comparison: speed.Comparison{Server: side(1, 790, time.Millisecond), Baseline: side(1, 1000, time.Millisecond)}}, false},
	} {
		if got := c.r.Met(); got != c.want {
			t.Errorf("%s %+v / %+v: Met = %v, want %v (%s)", c.r.Name, *c.r.Server, *c.r.Baseline, got, c.want, c.r.Target())
		}
	}
}
