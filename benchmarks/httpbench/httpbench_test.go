package httpbench

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := []byte("Running 1s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n" +
		`HTTPBENCH {"requests":1000,"duration_us":2000000,"bytes":500000,"errors":0,"p50_us":1500,"p90_us":3000,"p99_us":9000}` + "\n")
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 1000 || r.RequestsPerSec != 500 || r.BytesPerSec != 250000 || r.P50 != 1500*time.Microsecond || r.P99 != 9*time.Millisecond {
		t.Errorf("%+v", r)
	}
	for _, bad := range []string{
		"no summary",
		`HTTPBENCH {"requests":0,"duration_us":1000000,"bytes":0}`,
		`HTTPBENCH {"requests":10,"duration_us":1000000,"errors":3}`,
		`HTTPBENCH {broken`,
	} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCombine(t *testing.T) {
	c := combine([]Run{
		{Requests: 100, Bytes: 1000, Duration: time.Second, P50: 2 * time.Millisecond},
		{Requests: 300, Bytes: 3000, Duration: time.Second, P50: 4 * time.Millisecond},
	})
	if c.RequestsPerSec != 200 || c.BytesPerSec != 2000 || c.P50 != 3*time.Millisecond {
		t.Errorf("%+v", c)
	}
}

// TestShortRuns runs both measurements for a second each, with a small
// blob: it checks the plumbing (servers, wrk, parsing), not the speed.
func TestShortRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs wrk; skipped with -short")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Fatalf("this test needs wrk (apt-get install wrk): %v", err)
	}
	opts := Options{Duration: time.Second, Connections: 4, BlobConnections: 2, Rounds: 1, BlobSize: 1 << 20}
	m, err := Manifest(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Registry.Requests == 0 || m.Baseline.Requests == 0 || m.Body < 200 {
		t.Errorf("manifest: %+v", m)
	}
	b, err := Blob(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// Every response is the whole blob: bytes read cover the bodies.
	if b.Registry.Bytes < b.Registry.Requests*opts.BlobSize || b.Baseline.Bytes < b.Baseline.Requests*opts.BlobSize {
		t.Errorf("blob: %+v", b)
	}
	t.Logf("\n%s%s", m, b)
}
