package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nixery-go/nixery/closure"
)

// Package-set updates: one package gets a new version. In Nix a store
// path's hash covers its inputs, so the package's path changes and so does
// the path of everything that depends on it, directly or not; every other
// path stays. An image built before and after the update should share with
// its old self every layer that holds no changed path, and a client that
// pulled the old image should download little more than the changed paths.

// nixBase32 is the alphabet of store path hashes.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// rehash returns p with another hash: each character of the old one moved
// to the next of the alphabet, so the new path is as valid, as long, and
// sorts elsewhere among the others, as a rebuilt path does.
func rehash(p string) string {
	base := strings.TrimPrefix(p, "/nix/store/")
	if len(base) < 32 {
		return p + "-updated"
	}
	h := []byte(base[:32])
	for i, c := range h {
		if k := strings.IndexByte(nixBase32, c); k >= 0 {
			h[i] = nixBase32[(k+1)%len(nixBase32)]
		}
	}
	return "/nix/store/" + string(h) + base[32:]
}

// Updated returns the universe after the package attr got a new version:
// its store path and those of its dependants renamed (see rehash), with
// the same references, NAR sizes and compressed sizes, and the popularity
// recomputed by name (unchanged: names do not change). changed maps each
// old path that changed to its new path.
func (u *Universe) Updated(attr string, sizes Sizes) (*Universe, Sizes, map[string]string, error) {
	p, ok := u.Packages[attr]
	if !ok {
		return nil, Sizes{}, nil, fmt.Errorf("sim: unknown package %q", attr)
	}
	g := u.Graph
	// The path and every path whose closure holds it.
	changed := map[string]string{}
	stack := []int{g.Index(p)}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		old := g.Paths()[i].Path
		if _, seen := changed[old]; seen {
			continue
		}
		changed[old] = rehash(old)
		stack = append(stack, g.Users(i)...)
	}
	rename := func(q string) string {
		if n, ok := changed[q]; ok {
			return n
		}
		return q
	}
	paths := make([]closure.Path, 0, g.Len())
	for _, q := range g.Paths() {
		q.Path = rename(q.Path)
		refs := make([]string, len(q.References))
		for k, r := range q.References {
			refs[k] = rename(r)
		}
		q.References = refs
		paths = append(paths, q)
	}
	var roots []string
	for _, r := range g.Roots() {
		roots = append(roots, rename(r))
	}
	ng, err := closure.New(paths, roots)
	if err != nil {
		return nil, Sizes{}, nil, fmt.Errorf("sim: updating %s: %w", attr, err)
	}
	nu := *u
	nu.Graph = ng
	nu.Packages = make(map[string]string, len(u.Packages))
	for a, q := range u.Packages {
		nu.Packages[a] = rename(q)
	}
	if u.ClosureSizes != nil {
		nu.ClosureSizes = make(map[string]int64, len(u.ClosureSizes))
		for q, s := range u.ClosureSizes {
			nu.ClosureSizes[rename(q)] = s
		}
	}
	ns := Sizes{Paths: make(map[string]int64, len(sizes.Paths)), Overhead: sizes.Overhead}
	for q, s := range sizes.Paths {
		ns.Paths[rename(q)] = s
	}
	return &nu, ns, changed, nil
}

// UpdateResult is what one update does to the images of one workload under
// one algorithm: each image that holds the updated package is built before
// and after the update, and a client holding the image from before pulls
// the one from after.
type UpdateResult struct {
	Workload, Package, Algorithm string
	Budget                       int
	// Images is how many images of the workload hold the package.
	Images int
	// ChangedBytes is the compressed bytes of the changed paths of those
	// images, summed over the images: the least a client must download.
	ChangedBytes int64
	// PulledBytes is what the client downloads: the layers of the image
	// from after that the image from before did not have (per blob),
	// summed over the images.
	PulledBytes int64
	// PulledLayers counts those layers.
	PulledLayers int
	// Kept and Lost count the layers from before that hold no changed
	// path, found again in the image from after or not.
	Kept, Lost int
}

// Ratio is PulledBytes over ChangedBytes (1 is the ideal).
func (r UpdateResult) Ratio() float64 { return ratio(r.PulledBytes, r.ChangedBytes) }

// SimulateUpdates updates each package of pkgs in turn (from u, not
// cumulatively) and measures, for every workload and algorithm at budget,
// what the images holding it re-pull (see [UpdateResult]).
func SimulateUpdates(u *Universe, workloads []Workload, algos []Algorithm, budget int, sizes Sizes, pkgs []string) ([]UpdateResult, error) {
	var out []UpdateResult
	for _, pkg := range pkgs {
		nu, nsizes, changed, err := u.Updated(pkg, sizes)
		if err != nil {
			return nil, err
		}
		newPaths := map[string]bool{}
		for _, n := range changed {
			newPaths[n] = true
		}
		for _, w := range workloads {
			for _, a := range algos {
				r := UpdateResult{Workload: w.Name(), Package: pkg, Algorithm: a.Name, Budget: budget}
				for _, im := range w.Images {
					before, err := u.Closure(im)
					if err != nil {
						return nil, err
					}
					if _, ok := before.Lookup(u.Packages[pkg]); !ok {
						continue
					}
					after, err := nu.Closure(im)
					if err != nil {
						return nil, err
					}
					r.Images++
					for _, q := range after.Paths() {
						if newPaths[q.Path] {
							r.ChangedBytes += nsizes.Paths[q.Path]
						}
					}
					bl := a.Group(before, u.Popularity, budget)
					old := map[[32]byte]bool{}
					for _, l := range bl {
						old[layerKey(slices.Sorted(slices.Values(l)))] = true
					}
					now := map[[32]byte]bool{}
					for _, l := range a.Group(after, nu.Popularity, budget) {
						k := layerKey(slices.Sorted(slices.Values(l)))
						now[k] = true
						if !old[k] {
							r.PulledBytes += nsizes.LayerSize(l)
							r.PulledLayers++
						}
					}
					for _, l := range bl {
						if slices.ContainsFunc(l, func(q string) bool { _, c := changed[q]; return c }) {
							continue
						}
						if now[layerKey(slices.Sorted(slices.Values(l)))] {
							r.Kept++
						} else {
							r.Lost++
						}
					}
				}
				if r.Images > 0 {
					out = append(out, r)
				}
			}
		}
	}
	return out, nil
}

// UpdatePackages picks the packages to update in a workload's images: the
// one held by most images (a base library: many paths change), the one
// held by the median number, and one held by a single image (a leaf
// application), ties broken by name, each only once.
func UpdatePackages(u *Universe, workloads []Workload) ([]string, error) {
	attrs := map[string][]string{} // store path -> its attributes
	for a, p := range u.Packages {
		attrs[p] = append(attrs[p], a)
	}
	count := map[string]int{}
	for _, w := range workloads {
		for _, im := range w.Images {
			g, err := u.Closure(im)
			if err != nil {
				return nil, err
			}
			for _, q := range g.Paths() {
				for _, a := range attrs[q.Path] {
					count[a]++
				}
			}
		}
	}
	var held []string
	for a := range count {
		held = append(held, a)
	}
	slices.SortFunc(held, func(x, y string) int {
		if d := count[y] - count[x]; d != 0 {
			return d
		}
		return strings.Compare(x, y)
	})
	if len(held) == 0 {
		return nil, fmt.Errorf("sim: no package in the workloads")
	}
	var picks []string
	for _, a := range []string{held[0], held[len(held)/2], held[len(held)-1]} {
		if !slices.Contains(picks, a) {
			picks = append(picks, a)
		}
	}
	return picks, nil
}
