// Package speed measures how fast nixery assembles and serves images on a
// real package set (see package corpus), each measurement returning
// structured results for the benchmark harness:
//
//   - [Assembly]: layer assembly throughput of the layers package's
//     Assembler, cold (empty cache), warm (new layers from cached gzip
//     members) and cached (layers found), against `tar | gzip -6` and
//     `tar | pigz -6` and the bare single-core work (tar, gzip and both
//     sha256 on one goroutine) on the same store paths cut into the same
//     groups.
//     Throughput is NAR bytes over wall time, the same denominator for all.
//   - [Compression]: size and single-core speed of the layer format at each
//     gzip level and chunk size.
//   - [Wrk], [Compare] and [ManifestLatency]: the wrk load generator, its
//     report parsed, and side-by-side runs against a bare net/http handler
//     (package httpbench measures the registry with them).
//   - [Run] and [UsageOf]: peak RSS (ru_maxrss) and CPU time of a child
//     process, such as `nixery serve` after a pull workload.
//
// The store paths come from the corpus (package corpus) or, without Nix,
// from [HostStore], a fake store of the host's files.
//
// # Example
//
// Measuring the quick corpus:
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
// minute. The figures of the harness's last run are in
// benchmarks/results/latest/results.md.
//
// wrk, gzip, pigz and tar must be in PATH; every function fails with a
// clear error when one is missing.
package speed
