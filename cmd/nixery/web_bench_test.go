package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// coldNames are images of the bundled set for benchmarks that need a cold
// build each: a server with a fresh storage has none of them.
var coldNames = []string{"shell/git", "python3", "perl", "openssh/curl", "gnutls/wget", "krb5/sqlite", "gawk/less/tree", "openldap/nano"}

// BenchmarkColdBuildEvents follows /events of a real server during cold
// builds and reports the longest wait between two events of a build
// (target: at most 500 ms). Run it with -benchtime 1x (up to 8x: one cold
// image each).
func BenchmarkColdBuildEvents(b *testing.B) {
	testutil.RequireTools(b, "nix-build", "nix-store")
	srv := testutil.ServeNixery(b, testutil.NixeryOptions{})
	if b.N > len(coldNames) {
		b.Fatalf("at most %d cold builds", len(coldNames))
	}
	var maxGap time.Duration
	events, seconds := 0, 0.0
	b.ResetTimer()
	for i := range b.N {
		ctx, cancel := context.WithTimeout(b.Context(), buildTimeout)
		ch := make(chan timedEvent, 1024)
		followEvents(ctx, b, srv, ch)
		<-ch
		go testutil.GetManifest(ctx, srv.Client, srv.URL("/v2/"+coldNames[i]+"/manifests/latest"), mediaDockerManifest)
		var prev time.Time
		for e := range ch {
			if !prev.IsZero() {
				maxGap = max(maxGap, e.at.Sub(prev))
			}
			prev = e.at
			events++
			if e.Phase == "done" || e.Phase == "failed" {
				seconds += e.Seconds
				if e.Phase == "failed" {
					b.Errorf("%s: build failed", coldNames[i])
				}
				break
			}
		}
		cancel()
	}
	b.ReportMetric(float64(maxGap.Microseconds())/1000, "max-gap-ms")
	b.ReportMetric(float64(events)/seconds, "events/s")
}

// BenchmarkMetricsScrapeE2E scrapes /metrics of a real server that has
// built an image (target: under 5 ms a scrape).
func BenchmarkMetricsScrapeE2E(b *testing.B) {
	testutil.RequireTools(b, "nix-build", "nix-store")
	srv := testutil.ServeNixery(b, testutil.NixeryOptions{})
	ctx, cancel := context.WithTimeout(b.Context(), buildTimeout)
	defer cancel()
	if _, err := testutil.GetManifest(ctx, srv.Client, srv.URL("/v2/hello/manifests/latest"), mediaDockerManifest); err != nil {
		b.Fatal(err)
	}
	var n int64
	b.ResetTimer()
	for b.Loop() {
		resp, err := srv.Client.Get(srv.URL("/metrics"))
		if err != nil {
			b.Fatal(err)
		}
		n, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.SetBytes(n)
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/scrape")
}
