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
// Quick mode for CI is the caller's choice of inputs: a smaller path set
// for Assembly (SelectPaths with a byte bound) and shorter wrk runs
// (WrkOptions.Duration of 1 or 2 seconds) finish well under a minute.
//
// wrk, gzip, pigz and tar must be in PATH; every function fails with a
// clear error when one is missing.
package speed
