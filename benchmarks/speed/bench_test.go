package speed

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixery-go/nixery/benchmarks/corpus"
)

// BenchmarkCorpusAssembly runs [Assembly] with baselines on the real
// corpus built from this machine's dpkg database: the quick corpus, or with
// SPEED_CORPUS=full the first SPEED_MAX_MB (default 1024) megabytes of the
// full one. The corpus is generated into $TMPDIR/nixery-corpus-{quick,full}
// and reused between runs. Figures are reported as MB/s of NAR bytes:
//
//	go test -run '^$' -bench CorpusAssembly -benchtime 1x ./benchmarks/speed
func BenchmarkCorpusAssembly(b *testing.B) {
	full := os.Getenv("SPEED_CORPUS") == "full"
	mode := "quick"
	if full {
		mode = "full"
	}
	ctx := context.Background()
	c, err := corpus.Build(ctx, corpus.Options{Quick: !full, WorkDir: filepath.Join(os.TempDir(), "nixery-corpus-"+mode)})
	if err != nil {
		b.Fatal(err)
	}
	maxBytes := int64(0)
	if full {
		maxBytes = 1 << 30
		if s := os.Getenv("SPEED_MAX_MB"); s != "" {
			var mb int64
			for _, ch := range s {
				mb = mb*10 + int64(ch-'0')
			}
			maxBytes = mb << 20
		}
	}
	paths := SelectPaths(c.Graph, maxBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Assembly(ctx, AssemblyOptions{Paths: paths, Layers: 20, Baselines: true})
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range []Throughput{res.Cold, res.Warm, res.Cached, res.TarGzip, res.TarPigz} {
			b.Logf("%-14s %6.1f MB/s  %6.3f ratio  %v", t.Name, t.BytesPerSec()/1e6, t.Ratio(), t.Duration)
		}
		b.ReportMetric(res.Cold.BytesPerSec()/1e6, "cold-MB/s")
		b.ReportMetric(res.Warm.BytesPerSec()/1e6, "warm-MB/s")
		b.ReportMetric(res.TarGzip.BytesPerSec()/1e6, "gzip-MB/s")
		b.ReportMetric(res.TarPigz.BytesPerSec()/1e6, "pigz-MB/s")
		b.ReportMetric(float64(res.Cold.InputBytes)/1e6, "input-MB")
	}
}
