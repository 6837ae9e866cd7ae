package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// BenchmarkCachedManifest: the median latency of a cached manifest by tag
// from a filesystem server, and from an S3 replica with an empty disk
// that did not build the image (another replica on the bucket did),
// side by side (ns/op is the median).
func BenchmarkCachedManifest(b *testing.B) {
	testutil.RequireTools(b, "go", "nix-store", "nix-instantiate", "nix")
	bin := testutil.NixeryBinary(b)
	w := testutil.StartSeaweedFS(b)
	pop := filepath.Join(b.TempDir(), "popularity.json")
	os.WriteFile(pop, []byte(`{"hello": 1}`), 0o644)
	start := func(env ...string) *testutil.Nixery {
		n, err := testutil.StartNixery(b.Context(), testutil.NixeryOptions{Binary: bin, Dir: b.TempDir(), Env: append(env, "NIX_POPULARITY_URL="+pop)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Kill() })
		return n
	}
	get := func(b *testing.B, n *testutil.Nixery) {
		resp, err := n.Client.Get(n.URL("/v2/hello/manifests/latest"))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET manifest: %s", resp.Status)
		}
	}
	fsServer := start()
	builder := start(w.Env()...)
	get(b, fsServer)
	get(b, builder)
	replica := start(w.Env()...) // starts after the build: loads its record
	for _, c := range []struct {
		name string
		n    *testutil.Nixery
	}{{"filesystem", fsServer}, {"s3-replica", replica}} {
		b.Run(c.name, func(b *testing.B) {
			get(b, c.n)
			var ds []time.Duration
			for b.Loop() {
				t0 := time.Now()
				get(b, c.n)
				ds = append(ds, time.Since(t0))
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "median-µs")
		})
	}
}
