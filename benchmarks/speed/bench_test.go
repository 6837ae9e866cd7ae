package speed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nixery-go/nixery/benchmarks/corpus"
	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/s3store"
)

// Layer assembly is measured by one implementation, [Assembly], which the
// harness (go run ./benchmarks/cmd/harness) runs on the Debian corpus. The
// benchmarks below run it from go test, one at a time on a quiet machine:
//
//	go test -run '^$' -bench Assembly -benchtime 1x ./benchmarks/speed
//
// By default the store paths are at least SPEED_MAX_MB (default 512)
// megabytes of host files in a fake store (HostStore, made once under
// os.TempDir()); SPEED_CORPUS=quick or SPEED_CORPUS=full takes them from the
// corpus instead (built with Nix into $TMPDIR/nixery-corpus-{quick,full}).
// Throughputs are MB/s of NAR bytes.

// benchPaths returns the store paths the benchmarks assemble and the root
// they live below.
func benchPaths(b *testing.B) (string, []closure.Path) {
	b.Helper()
	maxBytes := int64(512) << 20
	if s := os.Getenv("SPEED_MAX_MB"); s != "" {
		mb, err := strconv.ParseInt(s, 10, 64)
		if err != nil || mb <= 0 {
			b.Fatalf("SPEED_MAX_MB=%q: want a positive number", s)
		}
		maxBytes = mb << 20
	}
	switch mode := os.Getenv("SPEED_CORPUS"); mode {
	case "":
		st, err := HostStore(maxBytes)
		if err != nil {
			b.Fatal(err)
		}
		return st.Root, st.ClosurePaths()
	case "quick", "full":
		c, err := corpus.Build(context.Background(), corpus.Options{Quick: mode == "quick", WorkDir: filepath.Join(os.TempDir(), "nixery-corpus-"+mode)})
		if err != nil {
			b.Fatal(err)
		}
		return "/", SelectPaths(c.Graph, maxBytes)
	default:
		b.Fatalf("SPEED_CORPUS=%q: want quick, full or nothing", mode)
		return "", nil
	}
}

// BenchmarkAssembly runs [Assembly] with its baselines and reports every
// contender's MB/s and the ratios of cold assembly to the bare single-core
// work and to `tar | gzip -6`.
func BenchmarkAssembly(b *testing.B) {
	root, paths := benchPaths(b)
	for b.Loop() {
		res, err := Assembly(context.Background(), AssemblyOptions{Paths: paths, Layers: 20, Layer: layers.Options{Root: root}, Baselines: true})
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range []Throughput{res.Cold, res.Warm, res.Cached, res.Bare, res.TarGzip, res.TarPigz} {
			b.Logf("%-18s %8.1f MB/s  %6.3f ratio  %v", t.Name, t.BytesPerSec()/1e6, t.Ratio(), t.Duration)
		}
		b.ReportMetric(res.Cold.BytesPerSec()/1e6, "cold-MB/s")
		b.ReportMetric(res.Warm.BytesPerSec()/1e6, "warm-MB/s")
		b.ReportMetric(res.Bare.BytesPerSec()/1e6, "bare-MB/s")
		b.ReportMetric(res.TarGzip.BytesPerSec()/1e6, "gzip6-MB/s")
		b.ReportMetric(res.TarPigz.BytesPerSec()/1e6, "pigz6-MB/s")
		b.ReportMetric(res.Cold.BytesPerSec()/res.Bare.BytesPerSec(), "cold/bare")
		b.ReportMetric(res.Cold.BytesPerSec()/res.TarGzip.BytesPerSec(), "cold/gzip6")
		b.ReportMetric(float64(res.Cold.InputBytes)/1e6, "input-MB")
	}
}

// rssChildEnv makes the test binary build one cold layer of the store paths
// named in it (JSON: root and paths) and exit; see BenchmarkPeakRSS.
const rssChildEnv = "NIXERY_SPEED_RSS_CHILD"

type rssJob struct {
	Root  string
	Paths []string
}

func rssChild(spec string) int {
	var job rssJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	dir, err := os.MkdirTemp("", "nixery-rss-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	t, err := coldLayer(context.Background(), dir, job.Paths, layers.Options{Root: job.Root})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	json.NewEncoder(os.Stdout).Encode(t)
	return 0
}

// BenchmarkPeakRSS builds one cold layer of the benchmark's store paths
// (SPEED_MAX_MB=2048 for a 2 GB layer) in a child process and reports the
// child's peak resident set (ru_maxrss).
func BenchmarkPeakRSS(b *testing.B) {
	root, paths := benchPaths(b)
	job := rssJob{Root: root}
	var input int64
	for _, p := range paths {
		job.Paths = append(job.Paths, p.Path)
		input += p.NarSize
	}
	spec, _ := json.Marshal(job)
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+string(spec))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatal(err)
		}
		var t Throughput
		if err := json.Unmarshal(out, &t); err != nil {
			b.Fatalf("child printed %q: %v", out, err)
		}
		u, err := UsageOf(cmd.ProcessState)
		if err != nil {
			b.Fatal(err)
		}
		t.InputBytes = input
		b.ReportMetric(float64(u.MaxRSS)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(t.BytesPerSec()/1e6, "cold-MB/s")
		b.Logf("%d store paths, %d bytes: %d compressed bytes in %v; peak RSS %d MiB", len(paths), input, t.OutputBytes, t.Duration, u.MaxRSS>>20)
	}
}

// BenchmarkAssemblyStore runs cold assembly (the Assembler with an empty
// cache, as [Assembly] does) writing to the filesystem store and to the S3
// store on a local SeaweedFS cluster (.ci/seaweedfs: two replicated volume
// servers, filer, S3 gateway), side by side in one run, and reports the
// cold MB/s of each; compare s3/cold-MB/s with filesystem/cold-MB/s.
//
//	go test -run '^$' -bench AssemblyStore -benchtime 1x ./benchmarks/speed
func BenchmarkAssemblyStore(b *testing.B) {
	root, paths := benchPaths(b)
	w := testutil.StartSeaweedFS(b)
	w.SetEnv(b)
	for _, backend := range []string{"filesystem", "s3"} {
		b.Run(backend, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				opts := AssemblyOptions{Paths: paths, Layers: 20, Layer: layers.Options{Root: root}}
				if backend == "s3" {
					s, err := s3store.New(b.Context(), s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: fmt.Sprintf("assembly-%d-%d/", time.Now().UnixNano(), i)})
					if err != nil {
						b.Fatal(err)
					}
					opts.Store, opts.StoreCPU = s, w.CPU
				}
				res, err := Assembly(b.Context(), opts)
				if err != nil {
					b.Fatal(err)
				}
				c := res.Cold
				b.Logf("%s: cold %.1f MB/s (%v, %.1f MB out; CPU: nixery %.1f s, store %.1f s), warm %.1f MB/s", backend,
					c.BytesPerSec()/1e6, c.Duration.Round(time.Millisecond), float64(c.OutputBytes)/1e6, c.CPU.Seconds(), c.StoreCPU.Seconds(), res.Warm.BytesPerSec()/1e6)
				if opts.Store != nil {
					// A member cache shared in the bucket: what a replica
					// with an empty disk would fetch instead of
					// compressing, the same bytes as the cold layers
					// (a layer is its paths' members and two framing
					// members), in input bytes per second like cold.
					f := fetchAll(b, opts.Store, res.ColdLayers)
					b.Logf("%s: fetching the cold layers' bytes back %.1f MB/s of input (%v)", backend, float64(c.InputBytes)/f.Seconds()/1e6, f.Round(time.Millisecond))
					b.ReportMetric(float64(c.InputBytes)/f.Seconds()/1e6, "fetch-MB/s")
				}
				b.ReportMetric(c.BytesPerSec()/1e6, "cold-MB/s")
				b.ReportMetric(c.CPU.Seconds(), "cold-nixery-CPU-s")
				b.ReportMetric(c.StoreCPU.Seconds(), "cold-store-CPU-s")
				b.ReportMetric(res.Warm.BytesPerSec()/1e6, "warm-MB/s")
			}
		})
	}
}

// fetchAll reads every blob of ds from s, as a replica fetching shared
// members would, and returns how long it took.
func fetchAll(b *testing.B, s layers.BlobStore, ds []layers.Descriptor) time.Duration {
	t0 := time.Now()
	for _, d := range ds {
		r, err := s.Open(b.Context(), d.Digest)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != d.Size {
			b.Fatalf("blob %s: %d bytes, %v", d.Digest, n, err)
		}
	}
	return time.Since(t0)
}
