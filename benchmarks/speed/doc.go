// Package speed measures how fast nixery assembles and serves images on a
// real package set (see package corpus), each measurement returning
// structured results for the benchmark harness:
//
//   - [Assembly]: layer assembly throughput of the layers package's
//     Assembler, cold (empty cache), warm (new layers from cached gzip
//     members) and cached (layers found), against `tar | gzip -6` and
//     `tar | pigz -6` on the same store paths cut into the same groups.
//     Throughput is NAR bytes over wall time, the same denominator for all.
//   - [ManifestLatency]: latency percentiles and requests per second of a
//     cached manifest GET under 64 concurrent connections, driven by wrk,
//     side by side with a bare net/http handler writing the same bytes.
//   - [BlobThroughput]: blob GET throughput, side by side with
//     [net/http.ServeFile] on the same bytes.
//   - [Run] and [UsageOf]: peak RSS (ru_maxrss) and CPU time of a child
//     process, such as `nixery serve` after a pull workload.
//
// # Example
//
// Measuring the quick corpus (figures from this project's 2-core machine):
//
//	c, _ := corpus.Build(ctx, corpus.Options{Quick: true, WorkDir: dir})
//	res, _ := speed.Assembly(ctx, speed.AssemblyOptions{
//		Paths:     speed.SelectPaths(c.Graph, 0),
//		Baselines: true,
//	})
//	fmt.Printf("%.0f MB/s\n", res.Cold.BytesPerSec()/1e6)
//
// Quick mode for CI is the caller's choice of inputs: Assembly on the quick
// corpus (about 120 MB) or on SelectPaths with a byte bound of 64 MB, and
// wrk runs of 1 or 2 seconds (WrkOptions.Duration) finish well under a
// minute. On this project's machine (2 shared cores) the quick corpus gave
// cold 123 MB/s, warm 502 MB/s, `tar | gzip -6` 24 MB/s and `tar | pigz -6`
// 27 MB/s; the first 1 GB of the full corpus cold 70 MB/s, warm 330 MB/s,
// gzip 15 MB/s, pigz 22 MB/s (BenchmarkCorpusAssembly, busy machine).
//
// A running `nixery serve` is measured by package pull (Options.Load),
// which calls ManifestLatency and BlobThroughput after its pulls.
//
// wrk, gzip, pigz and tar must be in PATH; every function fails with a
// clear error when one is missing.
package speed
