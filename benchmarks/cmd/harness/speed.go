package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/speed"
)

// Bytes of the corpus assembled by the speed stage.
const (
	speedBytes      = 1 << 30
	speedBytesQuick = 64 << 20
)

// runSpeed measures layer assembly against tar | gzip -6 and tar | pigz -6
// on the same store paths of the corpus (benchmarks/speed).
func runSpeed(ctx context.Context, e *env) error {
	if !e.opts.speed || e.corpus == nil {
		return nil
	}
	limit := int64(speedBytes)
	if e.opts.quick {
		limit = speedBytesQuick
	}
	paths := speed.SelectPaths(e.corpus.Graph, limit)
	res, err := speed.Assembly(ctx, speed.AssemblyOptions{Paths: paths, Baselines: true, Logger: e.log})
	if err != nil {
		return err
	}
	rows := []struct {
		name string
		t    speed.Throughput
	}{
		{"nixery cold (empty cache)", res.Cold},
		{"nixery warm (new layers of cached paths)", res.Warm},
		{"nixery cached (layers found)", res.Cached},
		{"tar | gzip -6", res.TarGzip},
		{"tar | pigz -6", res.TarPigz},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d store paths of the corpus, %.0f MB of NAR, cut into %d layers; `go run ./benchmarks/cmd/harness` calls `speed.Assembly` (benchmarks/speed). Throughput is NAR bytes over wall time.\n\n",
		res.Paths, float64(res.Cold.InputBytes)/1e6, res.Layers)
	b.WriteString("| contender | MB/s | compressed / NAR | seconds |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.1f | %.3f | %.2f |\n", report.Cell(r.name), r.t.BytesPerSec()/1e6, r.t.Ratio(), r.t.Duration.Seconds())
		if r.t != res.Cached { // cached lookups would dwarf the bars
			e.data.Throughput = append(e.data.Throughput, report.Bar{Name: r.name, MBps: r.t.BytesPerSec() / 1e6})
		}
	}
	if g := res.TarGzip.BytesPerSec(); g > 0 {
		fmt.Fprintf(&b, "\nCold assembly is %.1fx `tar | gzip -6`; warm is %.1fx.\n", res.Cold.BytesPerSec()/g, res.Warm.BytesPerSec()/g)
	}
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Assembly speed", Body: b.String()})
	return nil
}
