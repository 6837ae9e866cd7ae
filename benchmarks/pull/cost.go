package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
)

// CostOptions configure [LayerCost].
type CostOptions struct {
	// PkgsPath, Popularity, Binary, ModuleDir and Logger are as in
	// [Options].
	PkgsPath   string
	Popularity closure.Popularity
	Binary     string
	ModuleDir  string
	Logger     *slog.Logger
	// Image is the image pulled, a list of package attributes (see
	// [ImageName]). Required.
	Image []string
	// WorkDir holds the servers' storage, the engines' data and the
	// binary. Required.
	WorkDir string
	// Rounds is how many cold pulls of each form each engine makes; 0
	// means 3.
	Rounds int
}

// CostResult is what [LayerCost] measured.
type CostResult struct {
	Image string
	// Layers and Bytes are those of the image as served (many layers)
	// and flattened (NIXERY_MAX_LAYERS=2: one store-path layer and the
	// customisation layer).
	Layers, FlatLayers int
	Bytes, FlatBytes   int64
	Engines            []EngineCost
}

// EngineCost is one engine's cold pulls of the two forms.
type EngineCost struct {
	Engine string // "docker" or "podman"
	// Many and Flat are the durations of the cold pulls, in the order
	// made (the forms alternate).
	Many, Flat []time.Duration
}

// Median returns the median of ds.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Ratio is the median cold pull of the image as served over that of the
// image flattened.
func (c EngineCost) Ratio() float64 {
	return float64(Median(c.Many)) / float64(max(Median(c.Flat), 1))
}

// PerLayer is the extra time of one more layer: the difference of the
// medians over the difference of the layer counts (the bytes are the same
// store paths' either way; the difference of their sizes, at loopback
// speed, is negligible and reported).
func (r *CostResult) PerLayer(c EngineCost) time.Duration {
	if r.Layers <= r.FlatLayers {
		return 0
	}
	return (Median(c.Many) - Median(c.Flat)) / time.Duration(r.Layers-r.FlatLayers)
}

// LayerCost serves the image twice with `nixery serve` from the same
// package set, as it serves it (layers.Group) and flattened
// (NIXERY_MAX_LAYERS=2), and times cold pulls of each with a private Docker
// engine (a new empty dockerd for every pull) and with podman (a new empty
// store for every pull), alternating the forms. The store paths are
// realised and both images built before the first timed pull, so the
// times are pulls, not builds.
func LayerCost(ctx context.Context, o CostOptions) (*CostResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.PkgsPath == "" || o.WorkDir == "" || len(o.Image) == 0 {
		return nil, errors.New("pull: CostOptions need PkgsPath, WorkDir and Image")
	}
	rounds := o.Rounds
	if rounds == 0 {
		rounds = 3
	}
	work, err := filepath.Abs(o.WorkDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	for _, tool := range []string{"docker", "podman"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("pull: %s not found in PATH (run .ci/setup-clients): %w", tool, err)
		}
	}
	bin := o.Binary
	if bin == "" {
		if bin, err = testutil.BuildNixery(ctx, o.ModuleDir, work); err != nil {
			return nil, err
		}
	}
	opts := Options{PkgsPath: o.PkgsPath, Popularity: o.Popularity}
	name := ImageName(o.Image)
	res := &CostResult{Image: name}
	var servers [2]*testutil.Nixery
	for i, env := range [][]string{nil, {"NIXERY_MAX_LAYERS=2"}} {
		dir := filepath.Join(work, fmt.Sprintf("server-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		opts.Env = env
		srv, err := startServer(ctx, bin, dir, opts, log)
		if err != nil {
			return nil, err
		}
		defer stopServer(srv)
		servers[i] = srv
		m, err := testutil.GetManifest(ctx, srv.Client, srv.URL("/v2/"+name+"/manifests/latest"), "application/vnd.docker.distribution.manifest.v2+json")
		if err != nil {
			return nil, fmt.Errorf("pull: building %s (server %d): %w", name, i, err)
		}
		if i == 0 {
			res.Layers, res.Bytes = len(m.LayerDigests()), m.LayerBytes()
		} else {
			res.FlatLayers, res.FlatBytes = len(m.LayerDigests()), m.LayerBytes()
		}
	}
	log.Info("images built", "image", name, "layers", res.Layers, "bytes", res.Bytes, "flat_layers", res.FlatLayers, "flat_bytes", res.FlatBytes)

	dockerCost := EngineCost{Engine: "docker"}
	podmanCost := EngineCost{Engine: "podman"}
	for round := 0; round < rounds; round++ {
		for k := 0; k < 2; k++ {
			flat := (round+k)%2 == 1 // alternate which form goes first
			srv := servers[0]
			if flat {
				srv = servers[1]
			}
			ref := srv.Addr + "/" + name + ":latest"
			d, err := dockerColdPull(ctx, filepath.Join(work, "docker"), ref, log)
			if err != nil {
				return nil, err
			}
			p, err := podmanColdPull(ctx, ref)
			if err != nil {
				return nil, err
			}
			if flat {
				dockerCost.Flat, podmanCost.Flat = append(dockerCost.Flat, d), append(podmanCost.Flat, p)
			} else {
				dockerCost.Many, podmanCost.Many = append(dockerCost.Many, d), append(podmanCost.Many, p)
			}
			log.Info("cold pull", "ref", ref, "flat", flat, "docker", d, "podman", p)
		}
	}
	res.Engines = []EngineCost{dockerCost, podmanCost}
	return res, nil
}

// dockerColdPull pulls ref with a new private engine and returns how long
// the pull took.
func dockerColdPull(ctx context.Context, dir, ref string, log *slog.Logger) (time.Duration, error) {
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	eng, err := startEngine(ctx, dir, log)
	if err != nil {
		return 0, err
	}
	defer eng.stop()
	t0 := time.Now()
	if _, err := eng.docker(ctx, "pull", ref); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// podmanColdPull pulls ref into a new empty podman store (in a short
// directory under /tmp: podman refuses a run root longer than 50 bytes)
// and returns how long the pull took.
func podmanColdPull(ctx context.Context, ref string) (time.Duration, error) {
	dir, err := os.MkdirTemp("/tmp", "nxpp-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	args := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "podman", append(args, "pull", "--quiet", "--tls-verify=false", ref)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pull: podman pull %s: %w: %s", ref, err, strings.TrimSpace(out.String()))
	}
	d := time.Since(t0)
	// podman's store holds overlay mounts and files owned by root: its own
	// command removes them.
	exec.CommandContext(ctx, "podman", append(args, "rmi", "--all", "--force")...).Run()
	return d, nil
}
