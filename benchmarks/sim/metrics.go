package sim

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"time"

	"github.com/nixery-go/nixery/closure"
)

// Sizes gives the compressed size of layers.
type Sizes struct {
	// Paths maps each store path to the compressed size of its part of a
	// layer (its gzip members).
	Paths map[string]int64
	// Overhead is what every layer adds: the members holding the /nix and
	// /nix/store directory entries and the tar end-of-archive blocks.
	Overhead int64
}

// LayerSize returns the compressed size of a layer holding paths.
func (s Sizes) LayerSize(paths []string) int64 {
	total := s.Overhead
	for _, p := range paths {
		total += s.Paths[p]
	}
	return total
}

// PullModel is the modelled cost of a pull: its bytes over the bandwidth
// plus a fixed cost per layer downloaded (the registry round trips, the
// unpacking and the bookkeeping of one layer).
type PullModel struct {
	// Bandwidth is in bytes per second.
	Bandwidth float64
	// PerLayer is the fixed cost of one layer.
	PerLayer time.Duration
}

// DefaultPullModel is the model of the report: 100 MB/s and 50 ms a layer
// (issue 14 measured about 50 ms a layer with Debian's Docker 20.10 on
// the project's machine).
var DefaultPullModel = PullModel{Bandwidth: 100e6, PerLayer: 50 * time.Millisecond}

// Time returns the modelled time of downloading bytes in layers layers.
func (m PullModel) Time(bytes int64, layers int) time.Duration {
	t := time.Duration(layers) * m.PerLayer
	if m.Bandwidth > 0 {
		t += time.Duration(float64(bytes) / m.Bandwidth * float64(time.Second))
	}
	return t
}

// String describes the model, "100 MB/s + 50ms/layer".
func (m PullModel) String() string {
	return fmt.Sprintf("%g MB/s + %s/layer", m.Bandwidth/1e6, m.PerLayer)
}

// Budgets is the budget sweep of the report.
var Budgets = []int{10, 20, 40, 60, 100}

// Result is one algorithm on one workload at one budget.
type Result struct {
	Workload  string
	Shape     Shape
	Seed      uint64
	Algorithm string
	Budget    int
	Images    int
	// PullBytes is what a client pulling the images in order downloads;
	// IdealBytes is every unique store path of the workload once.
	PullBytes, IdealBytes int64
	// ChainBytes is what the Docker engine with its classic image store
	// downloads: it keeps layers by chain (a layer with every layer below
	// it in the manifest), so it skips the longest prefix of an image's
	// layers that an image pulled before also starts with and downloads
	// every later layer, even one it holds under another chain. Layer
	// order matters here; PullBytes is the same client without that rule
	// (containerd, podman).
	ChainBytes int64
	// PullLayers and ChainLayers count the layers downloaded in
	// PullBytes and ChainBytes: the per-layer part of [PullModel].
	PullLayers, ChainLayers int
	// Layers is the number of distinct layers in the workload.
	Layers int
	// MaxLayers and MeanLayers are layers per image.
	MaxLayers  int
	MeanLayers float64
	// GroupTime is the time the algorithm took for all images.
	GroupTime time.Duration
}

// PullRatio is PullBytes / IdealBytes.
func (r Result) PullRatio() float64 { return ratio(r.PullBytes, r.IdealBytes) }

// PullTime is the modelled time of the workload's pulls (PullBytes in
// PullLayers layers); ChainTime the same under the chain rule.
func (r Result) PullTime(m PullModel) time.Duration { return m.Time(r.PullBytes, r.PullLayers) }

// ChainTime is [Result.PullTime] under the Docker engine's chain rule.
func (r Result) ChainTime(m PullModel) time.Duration { return m.Time(r.ChainBytes, r.ChainLayers) }

// ChainRatio is ChainBytes / IdealBytes.
func (r Result) ChainRatio() float64 { return ratio(r.ChainBytes, r.IdealBytes) }

// Registry is what a registry serving every workload stores with one
// algorithm at one budget.
type Registry struct {
	Algorithm string
	Budget    int
	// Bytes is every distinct layer once; IdealBytes every distinct store
	// path once.
	Bytes, IdealBytes int64
	Layers            int
}

// Ratio is Bytes / IdealBytes.
func (r Registry) Ratio() float64 { return ratio(r.Bytes, r.IdealBytes) }

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Outcome is a whole simulation.
type Outcome struct {
	Results  []Result
	Registry []Registry
}

// layerKey identifies a layer by its exact set of store paths, as nixery's
// layer cache does.
func layerKey(paths []string) [32]byte {
	h := sha256.New()
	for _, p := range paths {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

// Simulate lays out every image of every workload with every algorithm at
// every budget and counts bytes. sizes must hold every store path of the
// images.
func Simulate(u *Universe, workloads []Workload, algos []Algorithm, budgets []int, sizes Sizes) (*Outcome, error) {
	graphs := make([][]*closure.Graph, len(workloads))
	allPaths := map[string]bool{}
	for wi, w := range workloads {
		for _, im := range w.Images {
			g, err := u.Closure(im)
			if err != nil {
				return nil, fmt.Errorf("sim: %s: %w", w.Name(), err)
			}
			for _, p := range g.Paths() {
				if _, ok := sizes.Paths[p.Path]; !ok {
					return nil, fmt.Errorf("sim: no compressed size for %s", p.Path)
				}
				allPaths[p.Path] = true
			}
			graphs[wi] = append(graphs[wi], g)
		}
	}
	var regIdeal int64
	for p := range allPaths {
		regIdeal += sizes.Paths[p]
	}
	out := &Outcome{}
	for _, a := range algos {
		for _, b := range budgets {
			reg := Registry{Algorithm: a.Name, Budget: b, IdealBytes: regIdeal}
			stored := map[[32]byte]bool{}
			for wi, w := range workloads {
				res := Result{Workload: w.Name(), Shape: w.Shape, Seed: w.Seed, Algorithm: a.Name, Budget: b, Images: len(w.Images)}
				have := map[[32]byte]bool{}
				chains := map[[32]byte]bool{}
				seen := map[string]bool{}
				total := 0
				for _, g := range graphs[wi] {
					start := time.Now()
					ls := a.Group(g, u.Popularity, b)
					res.GroupTime += time.Since(start)
					if err := checkLayers(g, ls, b); err != nil {
						return nil, fmt.Errorf("sim: %s on %s at budget %d: %w", a.Name, w.Name(), b, err)
					}
					cb, cl := chainPull(chains, ls, sizes)
					res.ChainBytes += cb
					res.ChainLayers += cl
					total += len(ls)
					res.MaxLayers = max(res.MaxLayers, len(ls))
					for _, l := range ls {
						k := layerKey(l)
						size := sizes.LayerSize(l)
						if !have[k] {
							have[k] = true
							res.PullBytes += size
							res.PullLayers++
						}
						if !stored[k] {
							stored[k] = true
							reg.Bytes += size
							reg.Layers++
						}
					}
					for _, p := range g.Paths() {
						if !seen[p.Path] {
							seen[p.Path] = true
							res.IdealBytes += sizes.Paths[p.Path]
						}
					}
				}
				res.Layers = len(have)
				res.MeanLayers = float64(total) / float64(len(graphs[wi]))
				out.Results = append(out.Results, res)
			}
			out.Registry = append(out.Registry, reg)
		}
	}
	return out, nil
}

// chainPull returns the bytes and layers the Docker engine downloads for an
// image with layers ls, given the chain IDs it holds, and adds the image's
// chains.
func chainPull(chains map[[32]byte]bool, ls [][]string, sizes Sizes) (int64, int) {
	ids := make([][32]byte, len(ls))
	var prev [32]byte
	skip := 0
	for i, l := range ls {
		k := layerKey(l)
		ids[i] = sha256.Sum256(append(prev[:], k[:]...))
		prev = ids[i]
		if skip == i && chains[ids[i]] {
			skip = i + 1
		}
	}
	var n int64
	for i, l := range ls {
		if i >= skip {
			n += sizes.LayerSize(l)
		}
		chains[ids[i]] = true
	}
	return n, len(ls) - skip
}

// checkLayers verifies that ls partitions g's paths into at most budget
// sorted layers.
func checkLayers(g *closure.Graph, ls [][]string, budget int) error {
	if len(ls) > budget {
		return fmt.Errorf("%d layers over the budget", len(ls))
	}
	seen := map[string]bool{}
	for _, l := range ls {
		if len(l) == 0 {
			return fmt.Errorf("empty layer")
		}
		if !sort.StringsAreSorted(l) {
			return fmt.Errorf("layer not sorted")
		}
		for _, p := range l {
			if seen[p] {
				return fmt.Errorf("%s in two layers", p)
			}
			if g.Index(p) < 0 {
				return fmt.Errorf("%s is not in the image", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != g.Len() {
		return fmt.Errorf("layers hold %d of %d paths", len(seen), g.Len())
	}
	return nil
}
