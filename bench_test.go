package nixery_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/internal/testutil"
)

// buildTimes is a slog handler that keeps the durations of the "build"
// lines: the whole build and its SBOM's generation.
type buildTimes struct {
	mu          sync.Mutex
	build, sbom []time.Duration
}

func (h *buildTimes) Enabled(context.Context, slog.Level) bool { return true }
func (h *buildTimes) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *buildTimes) WithGroup(string) slog.Handler            { return h }
func (h *buildTimes) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "build" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "duration":
			h.build = append(h.build, a.Value.Duration())
		case "sbom_duration":
			h.sbom = append(h.sbom, a.Value.Duration())
		}
		return true
	})
	return nil
}

// BenchmarkSBOMShare builds shell/git cold (a new storage directory each
// time: no image, layer or cache to reuse; the Nix store already has the
// closure after the first run) with the real Nix and the bundled set, and
// reports the median build time, the median time its SBOM took, and the
// SBOM's share of the build in percent (issue 13's target: under 5%):
//
//	go test -run '^$' -bench SBOMShare -benchtime 5x .
func BenchmarkSBOMShare(b *testing.B) {
	testutil.RequireTools(b, "nix-build")
	times := &buildTimes{}
	for b.Loop() {
		srv, err := nixery.New(b.Context(), nixery.WithStorage(b.TempDir()), nixery.WithLogger(slog.New(times)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := srv.Image(b.Context(), "shell/git"); err != nil {
			b.Fatal(err)
		}
		srv.Close()
	}
	times.mu.Lock()
	defer times.mu.Unlock()
	if len(times.build) == 0 || len(times.sbom) != len(times.build) {
		b.Fatalf("%d build lines, %d SBOM durations", len(times.build), len(times.sbom))
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	build, sbom := med(times.build), med(times.sbom)
	b.ReportMetric(float64(build.Microseconds())/1e3, "build-ms")
	b.ReportMetric(float64(sbom.Microseconds())/1e3, "sbom-ms")
	b.ReportMetric(100*float64(sbom)/float64(build), "sbom-%")
}
