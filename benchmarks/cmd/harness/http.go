package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nixery-go/nixery/benchmarks/httpbench"
	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/speed"
)

// runHTTP measures the registry's HTTP serving against bare net/http
// (benchmarks/httpbench): a cached manifest GET under 64 connections and a
// blob GET. It needs wrk, not the corpus, so it runs with -synthetic too.
func runHTTP(ctx context.Context, e *env) error {
	if !e.opts.http {
		return nil
	}
	opts := httpbench.Options{Duration: 5 * time.Second, Rounds: 2, BlobSize: 256 << 20}
	if e.opts.quick {
		opts = httpbench.Options{Duration: time.Second, Rounds: 1, BlobSize: 32 << 20}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The registry's handler (`registry.New` with the real blob store, assembler and grouping; Nix replaced by one fixed store path) and a bare net/http handler, each on its own 127.0.0.1 listener, loaded in turn by wrk (benchmarks/httpbench: %d round(s) of %v per side after a warm-up).\n\n", opts.Rounds, opts.Duration)
	b.WriteString("| request | connections | body bytes | server | req/s | MB/s | p50 | p90 | p99 |\n|---|---:|---:|---|---:|---:|---:|---:|---:|\n")
	var targets []string
	for _, m := range []func(context.Context, httpbench.Options) (httpbench.Result, error){httpbench.Manifest, httpbench.Blob} {
		r, err := m(ctx, opts)
		if err != nil {
			return err
		}
		verdict := "met"
		if !r.Met() {
			verdict = "NOT met"
		}
		targets = append(targets, fmt.Sprintf("- %s: %s: %s.\n", r.Name, r.Target(), verdict))
		for _, side := range []struct {
			name string
			w    *speed.WrkResult
		}{{"nixery", r.Server}, {"bare net/http", r.Baseline}} {
			w := side.w
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %.0f | %.1f | %s | %s | %s |\n", r.Name, w.Connections, r.Bytes, side.name,
				w.RequestsPerSec, w.BytesPerSec/1e6, w.P50.Round(time.Microsecond), w.P90.Round(time.Microsecond), w.P99.Round(time.Microsecond))
		}
		fmt.Fprintf(&b, "| %s | | | nixery / bare | %.2fx | %.2fx | %.2fx | | |\n", r.Name, r.RequestsRatio(), r.ThroughputRatio(), r.MedianRatio())
	}
	b.WriteString("\nTargets:\n\n" + strings.Join(targets, ""))
	e.data.Sections = append(e.data.Sections, report.Section{Title: "HTTP serving", Body: b.String()})
	return nil
}
