package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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
		return startBenchServer(b, bin, append(env, "NIX_POPULARITY_URL="+pop)...)
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

// startBenchServer starts `nixery serve` from bin with env for a
// benchmark, and kills it at cleanup.
func startBenchServer(b *testing.B, bin string, env ...string) *testutil.Nixery {
	b.Helper()
	n, err := testutil.StartNixery(b.Context(), testutil.NixeryOptions{Binary: bin, Dir: b.TempDir(), Env: env})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Kill() })
	return n
}

// BenchmarkS3Pull: `docker pull` of hello/big, an image with a 100 MiB
// layer of random bytes, from S3 servers on one bucket: one that
// redirects blobs to presigned URLs of the store (the default), one that
// sends them itself (NIXERY_BLOB_REDIRECT=false), side by side. Each
// iteration removes the image from Docker first (untimed); MB/s is the
// image's compressed bytes (layers and config) over the pull's time, which
// includes Docker's extraction.
func BenchmarkS3Pull(b *testing.B) {
	testutil.RequireTools(b, "nix-build", "nix-store", "nix", "docker")
	bin, err := loadBinary()
	if err != nil {
		b.Fatal(err)
	}
	w := testutil.StartSeaweedFS(b)
	env := append(w.Env(), replicaSetEnv(b, 100<<20, "")...)
	ctx := b.Context()
	const image = "hello/big"
	redirect := startBenchServer(b, bin, env...)
	m, err := testutil.GetManifest(ctx, redirect.Client, redirect.URL("/v2/"+image+"/manifests/latest"), testutil.MediaTypeDockerManifest)
	if err != nil {
		b.Fatal(err)
	}
	big := largestLayer(m)
	if big.Size < 100<<20 {
		b.Fatalf("the largest layer of %s has %d bytes, want 100 MiB", image, big.Size)
	}
	proxied := startBenchServer(b, bin, append(env, "NIXERY_BLOB_REDIRECT=false")...) // starts after the build: loads its record
	for _, c := range []struct {
		name   string
		n      *testutil.Nixery
		status int // of the big layer's GET
	}{{"redirect", redirect, http.StatusTemporaryRedirect}, {"proxied", proxied, http.StatusOK}} {
		b.Run(c.name, func(b *testing.B) {
			ref := dockerRef(b, c.n.Addr, image)
			// pull pulls the image, timed or not as the timer is, and
			// checks, untimed, that the big layer was asked for and
			// answered as it should be.
			want := regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("path=/v2/%s/blobs/%s status=%d", image, big.Digest, c.status)))
			pull := func() {
				mark := c.n.Mark()
				mustRun(ctx, b, "docker", "pull", ref)
				b.StopTimer()
				defer b.StartTimer()
				if !c.n.WaitLog(mark, want, 5*time.Second) {
					b.Fatalf("the server's log of docker pull has no %s:\n%s", want, testutil.Tail(c.n.LogSince(mark), 20))
				}
				dockerRemove(b, ref)
			}
			pull() // untimed (b.Loop starts the timer): the manifest cached, Docker warm
			b.SetBytes(m.LayerBytes() + m.Config.Size)
			for b.Loop() {
				pull()
			}
		})
	}
}
