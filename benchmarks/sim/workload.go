package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// Shape is a kind of workload.
type Shape string

// The workload shapes.
const (
	// ManySmall is many small images: 1 or 2 packages drawn from those
	// with smaller closures, a third of them with `shell`.
	ManySmall Shape = "many-small"
	// FewLarge is images of 3 to 5 packages drawn from those with the
	// largest closures, half of them with `shell`.
	FewLarge Shape = "few-large"
	// TeamUpdates is one image changing version by version: starting from
	// `shell` and 3 packages, each step replaces a package (half of the
	// steps) or adds or removes one, keeping 1 to 5.
	TeamUpdates Shape = "team-updates"
)

// Shapes lists every shape in report order.
var Shapes = []Shape{ManySmall, FewLarge, TeamUpdates}

// Workload is a seeded sequence of images.
type Workload struct {
	Shape  Shape
	Seed   uint64
	Images []Image
}

// Name returns "shape/seed".
func (w Workload) Name() string { return fmt.Sprintf("%s/%d", w.Shape, w.Seed) }

// Generate returns the workload of the given shape and seed with n images
// (at least 1). Packages are drawn with a popularity skew: a seeded ranking
// of the candidate packages, drawn with Zipf weights 1/rank^1.1, so a few
// packages are in many images, as on a real registry.
func (u *Universe) Generate(shape Shape, seed uint64, n int) (Workload, error) {
	n = max(n, 1)
	r := rand.New(rand.NewPCG(seed, uint64(len(shape))*0x9e37))
	cands := u.candidates()
	if len(cands) < 6 {
		return Workload{}, fmt.Errorf("sim: universe %q has only %d candidate packages", u.Name, len(cands))
	}
	// Candidates by closure size: the small half and the large quarter.
	bySize := slices.Clone(cands)
	csize := map[string]int64{}
	for _, a := range cands {
		if c, ok := u.ClosureSizes[u.Packages[a]]; ok {
			csize[a] = c
		} else {
			csize[a] = u.Graph.ClosureSize(u.Packages[a])
		}
	}
	sort.SliceStable(bySize, func(i, j int) bool {
		if csize[bySize[i]] != csize[bySize[j]] {
			return csize[bySize[i]] < csize[bySize[j]]
		}
		return bySize[i] < bySize[j]
	})
	w := Workload{Shape: shape, Seed: seed}
	switch shape {
	case ManySmall:
		pool := newZipf(r, bySize[:max(len(bySize)/2, 3)])
		for len(w.Images) < n {
			k := 1
			if r.IntN(5) < 2 {
				k = 2
			}
			w.Images = append(w.Images, u.image(pool.draw(k), r.IntN(3) == 0))
		}
	case FewLarge:
		pool := newZipf(r, bySize[len(bySize)-max(len(bySize)/4, 5):])
		for len(w.Images) < n {
			w.Images = append(w.Images, u.image(pool.draw(3+r.IntN(3)), r.IntN(2) == 0))
		}
	case TeamUpdates:
		pool := newZipf(r, cands)
		cur := pool.draw(3)
		w.Images = append(w.Images, u.image(cur, true))
		for len(w.Images) < n {
			switch op := r.IntN(4); {
			case op < 2 || (op == 2 && len(cur) >= 5) || (op == 3 && len(cur) <= 1):
				// Replace one package by one not in the image.
				i := r.IntN(len(cur))
				for tries := 0; tries < 50; tries++ {
					if p := pool.draw(1)[0]; !slices.Contains(cur, p) {
						cur = slices.Clone(cur)
						cur[i] = p
						break
					}
				}
			case op == 2:
				for tries := 0; tries < 50; tries++ {
					if p := pool.draw(1)[0]; !slices.Contains(cur, p) {
						cur = append(slices.Clone(cur), p)
						break
					}
				}
			default:
				i := r.IntN(len(cur))
				cur = slices.Delete(slices.Clone(cur), i, i+1)
			}
			w.Images = append(w.Images, u.image(cur, true))
		}
	default:
		return Workload{}, fmt.Errorf("sim: unknown workload shape %q", shape)
	}
	return w, nil
}

// candidates returns the packages an image may ask for: every attribute
// except the shell and always-added ones, sorted.
func (u *Universe) candidates() []string {
	var out []string
	for a := range u.Packages {
		if !slices.Contains(u.Shell, a) && !slices.Contains(u.Always, a) {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

func (u *Universe) image(pkgs []string, shell bool) Image {
	set := slices.Clone(pkgs)
	if shell {
		set = append(set, u.Shell...)
	}
	sort.Strings(set)
	return Image{Packages: slices.Compact(set), Shell: shell}
}

// zipf draws distinct packages from a seeded ranking with weights
// 1/rank^1.1.
type zipf struct {
	r     *rand.Rand
	items []string
	cum   []float64
}

func newZipf(r *rand.Rand, items []string) *zipf {
	ranked := slices.Clone(items)
	r.Shuffle(len(ranked), func(i, j int) { ranked[i], ranked[j] = ranked[j], ranked[i] })
	z := &zipf{r: r, items: ranked, cum: make([]float64, len(ranked))}
	total := 0.0
	for i := range ranked {
		total += 1 / math.Pow(float64(i+1), 1.1)
		z.cum[i] = total
	}
	return z
}

// draw returns k distinct items (fewer if there are fewer).
func (z *zipf) draw(k int) []string {
	k = min(k, len(z.items))
	var out []string
	for len(out) < k {
		x := z.r.Float64() * z.cum[len(z.cum)-1]
		i, _ := slices.BinarySearch(z.cum, x)
		i = min(i, len(z.items)-1)
		if !slices.Contains(out, z.items[i]) {
			out = append(out, z.items[i])
		}
	}
	return out
}
