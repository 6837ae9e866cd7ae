package layers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/layerbench"
)

// Benchmarks of layer assembly on a fake store of at least 512 MiB of host
// binaries (made once under os.TempDir() by layerbench.FakeClosure and reused
// by later runs). Throughputs (b.SetBytes) are MB/s of the layer's
// uncompressed tar. Run them one at a time on a quiet machine:
//
//	go test -run '^$' -bench . -benchtime 1x ./layers
//
// BenchmarkTargets measures cold assembly, the single-core bare work and
// `gzip -6` in one run and reports their ratios.

const benchBytes = 512 << 20

var (
	closureOnce sync.Once
	closure     *layerbench.Closure
	closureTar  int64
	closureErr  error
)

func benchClosure(b *testing.B) *layerbench.Closure {
	b.Helper()
	closureOnce.Do(func() {
		closure, closureErr = layerbench.FakeClosure(benchBytes)
		if closureErr == nil {
			var n countWriter
			closureTar, closureErr = layers.WriteTar(context.Background(), &n, closure.Root, closure.Paths)
		}
	})
	if closureErr != nil {
		b.Fatal(closureErr)
	}
	b.SetBytes(closureTar)
	b.ReportAllocs()
	return closure
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func report(b *testing.B, r layerbench.Result) {
	b.Helper()
	b.ReportMetric(float64(r.Out)/float64(r.In), "out/in")
	b.Logf("%s", r)
}

func BenchmarkCold(b *testing.B) {
	c := benchClosure(b)
	for b.Loop() {
		r, err := layerbench.Cold(context.Background(), c, "", layers.Options{})
		if err != nil {
			b.Fatal(err)
		}
		report(b, r)
	}
}

func BenchmarkWarm(b *testing.B) {
	c := benchClosure(b)
	w, err := layerbench.NewWarm(context.Background(), c, "", layers.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		// Run times only the assembly; its blob store and layer cache
		// are reset before it starts, so the loop's own time includes
		// that cleanup.
		r, err := w.Run(context.Background(), i)
		if err != nil {
			b.Fatal(err)
		}
		i++
		b.ReportMetric(r.MBps(), "warm-MB/s")
		b.ReportMetric(r.Cores(), "warm-cores")
		report(b, r)
	}
}

func BenchmarkBareSingleCore(b *testing.B) {
	c := benchClosure(b)
	for b.Loop() {
		r, err := layerbench.Bare(context.Background(), c, layers.DefaultLevel)
		if err != nil {
			b.Fatal(err)
		}
		report(b, r)
	}
}

func BenchmarkTarGzip6(b *testing.B) { benchExternal(b, "gzip", "-6") }

func BenchmarkTarPigz6(b *testing.B) { benchExternal(b, "pigz", "-6", "-p2") }

func benchExternal(b *testing.B, argv ...string) {
	testutil.RequireTools(b, argv[0])
	c := benchClosure(b)
	for b.Loop() {
		r, err := layerbench.External(context.Background(), c, argv...)
		if err != nil {
			b.Fatal(err)
		}
		report(b, r)
	}
}

func BenchmarkStreamLayer(b *testing.B) {
	c := benchClosure(b)
	for b.Loop() {
		r, err := layerbench.StreamLayer(context.Background(), c, layers.DefaultLevel)
		if err != nil {
			b.Fatal(err)
		}
		report(b, r)
	}
}

// BenchmarkTargets runs cold assembly, the bare single-core work and
// `tar | gzip -6` on the same bytes, one after another in each iteration, and
// reports each one's MB/s and the ratios the project targets (cold/bare >=
// 1.7, cold/gzip6 >= 3).
func BenchmarkTargets(b *testing.B) {
	c := benchClosure(b)
	ctx := context.Background()
	for b.Loop() {
		cold, err := layerbench.Cold(ctx, c, "", layers.Options{})
		if err != nil {
			b.Fatal(err)
		}
		bare, err := layerbench.Bare(ctx, c, layers.DefaultLevel)
		if err != nil {
			b.Fatal(err)
		}
		gz, err := layerbench.External(ctx, c, "gzip", "-6")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(cold.MBps(), "cold-MB/s")
		b.ReportMetric(bare.MBps(), "bare-MB/s")
		b.ReportMetric(gz.MBps(), "gzip6-MB/s")
		b.ReportMetric(cold.MBps()/bare.MBps(), "cold/bare")
		b.ReportMetric(cold.MBps()/gz.MBps(), "cold/gzip6")
		// On a machine shared with other work the wall-clock ratios
		// depend on the CPU the measurements got: these say how many
		// cores cold assembly kept busy and what it cost in CPU time
		// relative to the bare work.
		b.ReportMetric(cold.Cores(), "cold-cores")
		b.ReportMetric(cold.CPU.Seconds()/bare.CPU.Seconds(), "cold-cpu/bare-cpu")
		b.Logf("cold %v; bare %v; gzip -6 %v", cold, bare, gz)
	}
}

// rssChildEnv makes the test binary build a cold layer of a closure of the
// given size and exit (see BenchmarkPeakRSS2GB).
const rssChildEnv = "NIXERY_LAYERS_RSS_CHILD"

func init() {
	if v := os.Getenv(rssChildEnv); v != "" {
		os.Exit(rssChild(v))
	}
}

func rssChild(v string) int {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := layerbench.FakeClosure(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := layerbench.Cold(context.Background(), c, "", layers.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// BenchmarkPeakRSS2GB builds a cold layer of a 2 GiB closure in a child
// process and reports the child's peak resident set (ru_maxrss).
func BenchmarkPeakRSS2GB(b *testing.B) {
	const size = 2 << 30
	c, err := layerbench.FakeClosure(size) // made here, outside the child
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("closure: %d store paths, %d bytes", len(c.Paths), c.Bytes)
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+strconv.Itoa(size))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		var r layerbench.Result
		if err := json.Unmarshal(out, &r); err != nil {
			b.Fatalf("child printed %q: %v", out, err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
		b.ReportMetric(r.MBps(), "cold-MB/s")
		b.Logf("%s; peak RSS %d KiB", r, ru.Maxrss)
	}
}
