// Command httpbench runs the registry's side-by-side HTTP measurements
// (see package httpbench) and prints them.
//
//	go run ./benchmarks/httpbench/cmd/httpbench [-d 10s] [-c 64] [-blob-size 524288000] [-rounds 2] [-only manifest|blob]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/nixery-go/nixery/benchmarks/httpbench"
)

func main() {
	var opts httpbench.Options
	flag.DurationVar(&opts.Duration, "d", 0, "duration of each wrk run (default 10s)")
	flag.IntVar(&opts.Connections, "c", 0, "wrk connections for the manifest (default 64)")
	flag.IntVar(&opts.BlobConnections, "blob-c", 0, "wrk connections for the blob (default 4)")
	flag.IntVar(&opts.Threads, "t", 0, "wrk threads (default 2)")
	flag.Int64Var(&opts.BlobSize, "blob-size", 0, "blob size in bytes (default 500 MB)")
	flag.StringVar(&opts.Dir, "dir", "", "working directory (default: a temporary one)")
	flag.IntVar(&opts.Rounds, "rounds", 0, "alternating rounds per server (default 2)")
	only := flag.String("only", "", "run only \"manifest\" or \"blob\"")
	flag.Parse()
	ctx := context.Background()
	ok := true
	if *only == "" || *only == "manifest" {
		r, err := httpbench.Manifest(ctx, opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpbench:", err)
			os.Exit(1)
		}
		fmt.Print(r)
		pass := r.RequestsRatio() >= 0.8 && r.MedianRatio() <= 1.25
		ok = ok && pass
		fmt.Printf("  target: requests >= 0.80x, median <= 1.25x: %v\n", verdict(pass))
	}
	if *only == "" || *only == "blob" {
		r, err := httpbench.Blob(ctx, opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpbench:", err)
			os.Exit(1)
		}
		fmt.Print(r)
		pass := r.ThroughputRatio() >= 0.8
		ok = ok && pass
		fmt.Printf("  target: throughput >= 0.80x: %v\n", verdict(pass))
	}
	if !ok {
		os.Exit(1)
	}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}
