package pull

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nixery-go/nixery/benchmarks/corpus"
	"github.com/nixery-go/nixery/internal/testutil"
)

// TestPrivateEngine starts and stops a private dockerd.
func TestPrivateEngine(t *testing.T) {
	testutil.RequireTools(t, "docker", Dockerd)
	ctx := context.Background()
	e, err := startEngine(ctx, t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.docker(ctx, "info", "--format", "{{.DockerRootDir}} {{.Images}}")
	if err != nil {
		e.stop()
		t.Fatal(err)
	}
	if want := filepath.Join(e.dirs[1]) + " 0\n"; out != want {
		t.Errorf("docker info = %q, want %q (own data root, no images)", out, want)
	}
	pid := e.cmd.Process.Pid
	e.stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("dockerd (pid %d) still running after stop", pid)
	}
	for _, d := range e.dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left behind", d)
		}
	}
}

// TestRunQuickCorpus serves the quick corpus with nixery serve, pulls
// three images with a private Docker engine and checks the bytes Docker
// downloaded against the manifests served.
func TestRunQuickCorpus(t *testing.T) {
	testutil.RequireTools(t, "docker", Dockerd, "nix-build")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := corpus.Build(ctx, corpus.Options{Quick: true, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The last image was pulled before: Docker holds its manifest and
	// may ask for no more than its digest (a HEAD).
	images := [][]string{{"shell", "jq"}, {"shell", "less"}, {"jq", "perl"}, {"shell", "jq"}}
	res, err := Run(ctx, Options{
		PkgsPath:   c.PkgsPath,
		Popularity: c.Popularity,
		Images:     images,
		WorkDir:    t.TempDir(),
		Logger:     slog.Default(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != len(images) {
		t.Fatalf("%d images pulled", len(res.Images))
	}
	for i, img := range res.Images {
		t.Logf("%s: %d layers, %d fetched, %d already present, %d layer bytes (per-blob model %d, chain model %d), %v",
			img.Ref, len(img.Manifest.Layers), img.LayersFetched, img.AlreadyExists, img.LayerBytes, img.PerBlobBytes, img.ChainBytes, img.Duration)
		for k, l := range img.Manifest.Layers {
			t.Logf("  layer %2d %s %10d bytes", k, l.Digest.Hex[:12], l.Size)
		}
		if img.LayerBytes != img.ChainBytes {
			t.Errorf("image %d: Docker downloaded %d layer bytes, the chain model says %d", i, img.LayerBytes, img.ChainBytes)
		}
		for _, q := range img.Requests {
			if q.Kind() == "manifest" {
				t.Logf("  %s %s: %d, %d bytes, digest %s", q.Method, q.Path, q.Status, q.Bytes, q.ContentDigest)
			}
		}
		if i == len(images)-1 {
			// Pulled before: Docker has it all. (The manifest may come in
			// the other format, Docker's or OCI's, as the server negotiates
			// it by the request's Accept: a HEAD and a GET differ; its
			// layers are the same.)
			same := len(img.Manifest.Layers) == len(res.Images[0].Manifest.Layers)
			for k := range img.Manifest.Layers {
				same = same && img.Manifest.Layers[k].Digest == res.Images[0].Manifest.Layers[k].Digest
			}
			if !img.UpToDate || img.LayersFetched != 0 || img.ConfigBytes != 0 || !same {
				t.Errorf("image %d, pulled again: up to date %v, %d layers fetched, %d config bytes, same layers as the first pull %v (manifests %s, %s)",
					i, img.UpToDate, img.LayersFetched, img.ConfigBytes, same, img.ManifestDigest, res.Images[0].ManifestDigest)
			}
			continue
		}
		if img.LayersFetched+img.AlreadyExists != len(img.Manifest.Layers) {
			t.Errorf("image %d: %d fetched + %d present != %d layers", i, img.LayersFetched, img.AlreadyExists, len(img.Manifest.Layers))
		}
		if img.ConfigBytes != img.Manifest.Config.Size {
			t.Errorf("image %d: config bytes %d, manifest says %d", i, img.ConfigBytes, img.Manifest.Config.Size)
		}
	}
	// The first image is downloaded whole.
	var whole int64
	for _, l := range res.Images[0].Manifest.Layers {
		whole += l.Size
	}
	if res.Images[0].LayerBytes != whole {
		t.Errorf("first image: %d layer bytes downloaded, its layers hold %d", res.Images[0].LayerBytes, whole)
	}
	// The second shares the shell packages with the first.
	if res.Images[1].AlreadyExists == 0 || res.Images[1].LayerBytes >= res.Images[1].PerBlobBytes+whole {
		t.Errorf("second image reused nothing: %+v", res.Images[1])
	}
	if err := Agree(res.LayerBytes, res.ChainBytes, 0.0); err != nil {
		t.Error(err)
	}
	if res.Server.MaxRSS <= 0 {
		t.Errorf("server peak RSS %d", res.Server.MaxRSS)
	}
	// The simulation: the same grouping, popularity and budget as the
	// server, exact layer sizes from the layers package, Docker's rule.
	// The customisation layer (last, unique per image) is left out of
	// both sides.
	pred, err := Simulate(ctx, c, images, 0, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	measured := res.StorePathLayerBytes()
	t.Logf("Docker downloaded %d layer bytes without customisation layers; simulated %d (a client skipping every known blob: %d)",
		measured, pred.ChainBytes(), pred.PerBlobBytes())
	if err := Agree(measured, pred.ChainBytes(), 0.02); err != nil {
		t.Error(err)
	}
	for i, img := range res.Images {
		if got, want := len(img.Manifest.Layers)-1, len(pred.Layers[i]); got != want {
			t.Errorf("image %d: %d store path layers served, %d simulated", i, got, want)
		}
	}
	t.Logf("total: %d layer bytes, %d config, %d manifest; per-blob %d, chain %d; server peak RSS %d MiB; %v",
		res.LayerBytes, res.ConfigBytes, res.ManifestBytes, res.PerBlobBytes, res.ChainBytes, res.Server.MaxRSS>>20, res.Duration)
}

// TestLayerCostQuickCorpus times one cold pull of each form of an image of
// the quick corpus with both engines, and checks what it reports.
func TestLayerCostQuickCorpus(t *testing.T) {
	testutil.RequireTools(t, "docker", Dockerd, "podman", "nix-build")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := corpus.Build(ctx, corpus.Options{Quick: true, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := LayerCost(ctx, CostOptions{
		PkgsPath:   c.PkgsPath,
		Popularity: c.Popularity,
		Image:      []string{"shell", "jq"},
		WorkDir:    t.TempDir(),
		Rounds:     1,
		Logger:     slog.Default(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.FlatLayers != 2 || res.Layers <= res.FlatLayers {
		t.Errorf("layers: %d as served, %d flattened", res.Layers, res.FlatLayers)
	}
	// The same store paths either way: the compressed bytes differ only
	// by the layers' own overhead.
	if d := res.Bytes - res.FlatBytes; d < -res.FlatBytes/20 || d > res.FlatBytes/20 {
		t.Errorf("bytes: %d as served, %d flattened", res.Bytes, res.FlatBytes)
	}
	if len(res.Engines) != 2 {
		t.Fatalf("engines: %+v", res.Engines)
	}
	for _, e := range res.Engines {
		if len(e.Many) != 1 || len(e.Flat) != 1 || e.Many[0] <= 0 || e.Flat[0] <= 0 {
			t.Errorf("%s: pulls %v layered, %v flattened", e.Engine, e.Many, e.Flat)
		}
		t.Logf("%s: layered %v, flattened %v, ratio %.2f, per layer %v", e.Engine, e.Many, e.Flat, e.Ratio(), res.PerLayer(e))
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {[]time.Duration{3}, 3}, {[]time.Duration{5, 1, 3}, 3}, {[]time.Duration{4, 1, 3, 2}, 2}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
