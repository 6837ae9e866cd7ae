package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// BenchmarkFlood floods a real `nixery serve` with its default limits (2
// build slots, a queue of 32, 4 cold images per client) with 1,000
// distinct names from 50 concurrent clients, each on its own loopback
// address and sending its next request as soon as the last is answered,
// while one more client asks for a cached image over and over. Two kinds
// of names:
//
//   - cold: packages of a generated set (testutil.PackageSet, one small
//     file each, served from a git repository at a commit), each a real
//     Nix evaluation, build and layer assembly when admitted;
//   - unknown: names the set does not have, each a real Nix evaluation
//     that ends in 404 (and is remembered by the negative cache).
//
// Each name is asked for once: most find the queue full. It reports the
// server's peak RSS and goroutines, the latency of the 503s a full queue
// answers, and the median latency of the cached image during the flood
// over that of the idle server. Run it with
//
//	go test -run '^$' -bench '^BenchmarkFlood$' -benchtime 1x ./cmd/nixery
func BenchmarkFlood(b *testing.B) {
	for _, kind := range []string{"cold", "unknown"} {
		b.Run(kind, func(b *testing.B) { benchFlood(b, kind, 0) })
	}
}

// BenchmarkFloodAll is BenchmarkFlood's cold flood with clients that ask
// again 100 ms after a 503 until every one of the 1,000 names is built:
// the queue stays full for minutes, and the server ends with 1,000 more
// images. It takes about 4 minutes on 2 cores.
func BenchmarkFloodAll(b *testing.B) { benchFlood(b, "cold", 100*time.Millisecond) }

func benchFlood(b *testing.B, kind string, retry time.Duration) {
	const names = 1000
	f := flood{clients: 50, firstIP: 100, retry: retry}
	set := testutil.PackageSet{Small: append(testutil.SmallNames("p", names*b.N), "cached")}
	s := startLoadServer(b, set)
	client := testutil.ClientFrom(testutil.LoopbackIP(0))
	defer client.CloseIdleConnections()
	s.checkImage(b, client, "cached")
	idleMedian := s.cachedMedian(b, client, 2*time.Second)
	idle := s.idleGoroutines(b)
	b.ResetTimer()
	var ty *tally
	var during time.Duration
	var use *serverUsage
	for i := range b.N {
		prefix := "p"
		if kind == "unknown" {
			prefix = "unknown"
		}
		batch := testutil.SmallNames(prefix, names*(i+1))[names*i:]
		use = s.sample(50 * time.Millisecond)
		ctx, stop := context.WithCancel(b.Context())
		medianDone := make(chan error, 1)
		go func() {
			var err error
			during, err = s.cachedMedianUntil(ctx, client)
			medianDone <- err
		}()
		ty = f.run(b.Context(), s, batch)
		stop()
		if err := <-medianDone; err != nil {
			b.Fatal(err)
		}
		use.stop()
	}
	b.StopTimer()
	for _, w := range ty.wrong {
		b.Error(w)
	}
	if use.err != nil {
		b.Fatal(use.err)
	}
	after := s.settle(b, idle+5)
	b.ReportMetric(float64(use.peakRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(use.goroutines), "peak-goroutines")
	b.ReportMetric(float64(after), "goroutines-after")
	b.ReportMetric(float64(percentile(ty.busy, 50).Microseconds())/1000, "503-p50-ms")
	b.ReportMetric(float64(percentile(ty.busy, 99).Microseconds())/1000, "503-p99-ms")
	b.ReportMetric(float64(percentile(ty.busy, 100).Microseconds())/1000, "503-max-ms")
	b.ReportMetric(float64(idleMedian.Microseconds())/1000, "cached-idle-p50-ms")
	b.ReportMetric(float64(during.Microseconds())/1000, "cached-flood-p50-ms")
	b.ReportMetric(float64(during)/float64(idleMedian), "cached-p50-ratio")
	b.ReportMetric(float64(ty.statuses[200]), "200s")
	b.ReportMetric(float64(ty.statuses[404]), "404s")
	b.ReportMetric(float64(ty.statuses[503]), "503s")
	b.ReportMetric(float64(ty.statuses[429]), "429s")
	b.ReportMetric(float64(len(s.records(b))), "records")
	b.Logf("%s: %s; idle %d goroutines, %d after", kind, ty, idle, after)
}

// cachedMedian is the median latency of requests for the cached image,
// one after another, for d.
func (s *loadServer) cachedMedian(b *testing.B, client *http.Client, d time.Duration) time.Duration {
	ctx, cancel := context.WithTimeout(b.Context(), d)
	defer cancel()
	m, err := s.cachedMedianUntil(ctx, client)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// cachedMedianUntil asks for the cached image, one request after
// another, until ctx ends, and returns the median latency.
func (s *loadServer) cachedMedianUntil(ctx context.Context, client *http.Client) (time.Duration, error) {
	var ls []time.Duration
	url := s.manifestURL("cached")
	for ctx.Err() == nil {
		a := get(context.Background(), client, url, 0)
		if a.status != 200 || a.wrong != "" {
			return 0, fmt.Errorf("the cached image: %+v", a)
		}
		ls = append(ls, a.latency)
	}
	return percentile(ls, 50), nil
}
