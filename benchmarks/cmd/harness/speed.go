package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/speed"
	"github.com/nixery-go/nixery/layers"
)

// Bytes of the corpus assembled by the speed stage, and compressed at every
// setting by its compression table.
const (
	speedBytes            = 1 << 30
	speedBytesQuick       = 64 << 20
	compressionBytes      = 32 << 20
	compressionBytesQuick = 16 << 20
)

// runSpeed measures layer assembly against the bare single-core work,
// tar | gzip -6 and tar | pigz -6 on the same store paths of the corpus, and
// the layer format's size and speed at every gzip level and at three chunk
// sizes (benchmarks/speed).
func runSpeed(ctx context.Context, e *env) error {
	if !e.opts.speed || e.corpus == nil {
		return nil
	}
	limit, climit := int64(speedBytes), int64(compressionBytes)
	if e.opts.quick {
		limit, climit = speedBytesQuick, compressionBytesQuick
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
		{"bare single-core work (tar, gzip, both sha256)", res.Bare},
		{"tar | gzip -6", res.TarGzip},
		{"tar | pigz -6", res.TarPigz},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d store paths of the corpus, %.0f MB of NAR, cut into %d layers; `go run ./benchmarks/cmd/harness` calls `speed.Assembly` (benchmarks/speed), as `go test -bench Assembly ./benchmarks/speed` does. Throughput is NAR bytes over wall time.\n\n",
		res.Paths, float64(res.Cold.InputBytes)/1e6, res.Layers)
	b.WriteString("| contender | MB/s | compressed / NAR | seconds |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.1f | %.3f | %.2f |\n", report.Cell(r.name), r.t.BytesPerSec()/1e6, r.t.Ratio(), r.t.Duration.Seconds())
		if r.t != res.Cached { // cached lookups would dwarf the bars
			e.data.Throughput = append(e.data.Throughput, report.Bar{Name: r.name, MBps: r.t.BytesPerSec() / 1e6})
		}
	}
	if g := res.TarGzip.BytesPerSec(); g > 0 {
		fmt.Fprintf(&b, "\nCold assembly is %.1fx `tar | gzip -6`, %.1fx `tar | pigz -6` and %.1fx the bare single-core work; warm is %.1fx `tar | gzip -6`.\n",
			res.Cold.BytesPerSec()/g, res.Cold.BytesPerSec()/res.TarPigz.BytesPerSec(), res.Cold.BytesPerSec()/res.Bare.BytesPerSec(), res.Warm.BytesPerSec()/g)
	}
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Assembly speed", Body: b.String()})

	sample := speed.SamplePaths(e.corpus.Graph, climit)
	settings, err := speed.Compression(ctx, speed.CompressionOptions{
		Paths:      sample,
		Levels:     []int{1, 2, 3, 4, 5, 6, 7, 8, 9},
		ChunkSizes: []int{256 << 10, 4 << 20},
	})
	if err != nil {
		return err
	}
	b.Reset()
	var nar int64
	for _, p := range sample {
		nar += p.NarSize
	}
	fmt.Fprintf(&b, "The layer format (`speed.Compression`) at each gzip level and chunk size: one cold layer of %d store paths of the corpus (%.0f MB of NAR) on one compressing goroutine. The defaults are level %d and %d KiB chunks (layers.DefaultLevel, layers.DefaultChunkSize).\n\n",
		len(sample), float64(nar)/1e6, layers.DefaultLevel, layers.DefaultChunkSize>>10)
	b.WriteString("| level | chunk KiB | compressed / NAR | MB/s on one core |\n|---:|---:|---:|---:|\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "| %d | %d | %.4f | %.1f |\n", s.Level, s.ChunkSize>>10, s.Ratio(), s.BytesPerSec()/1e6)
	}
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Compression settings", Body: b.String()})
	return nil
}
