package sim

import "fmt"

// Bound is what no layout of a workload's images can beat, even one made
// knowing every image to come: a yardstick for the targets, not an
// algorithm.
type Bound struct {
	Workload string
	Shape    Shape
	// IdealBytes is every unique store path once, as in [Result].
	IdealBytes int64
	// ChainBytes bounds what the Docker engine's chain rule downloads:
	// an image reuses at most one earlier image's prefix, so it downloads
	// at least its bytes less the most it shares with any one earlier
	// image.
	ChainBytes int64
	// IdealLayers is the fewest layers a layout that downloads no path
	// twice can download: a layer pulled with an image must hold new
	// paths that every later image holds all of or none of (an image's
	// layers hold only its closure), so each image downloads at least one
	// layer for each set of later images that hold some of its new
	// paths, and a layout of exactly those layers downloads no path twice.
	IdealLayers int
}

// ChainRatio is ChainBytes / IdealBytes.
func (b Bound) ChainRatio() float64 { return ratio(b.ChainBytes, b.IdealBytes) }

// IdealTime is the modelled time of the ideal bytes in IdealLayers layers,
// each with the layer overhead of sizes.
func (b Bound) IdealTime(m PullModel, sizes Sizes) float64 {
	return m.Time(b.IdealBytes+int64(b.IdealLayers)*sizes.Overhead, b.IdealLayers).Seconds()
}

// Bounds computes the workloads' bounds. sizes must hold every store path
// of the images.
func Bounds(u *Universe, workloads []Workload, sizes Sizes) ([]Bound, error) {
	var out []Bound
	for _, w := range workloads {
		sets := make([]map[string]bool, len(w.Images))
		for i, im := range w.Images {
			g, err := u.Closure(im)
			if err != nil {
				return nil, fmt.Errorf("sim: %s: %w", w.Name(), err)
			}
			sets[i] = make(map[string]bool, g.Len())
			for _, p := range g.Paths() {
				if _, ok := sizes.Paths[p.Path]; !ok {
					return nil, fmt.Errorf("sim: no compressed size for %s", p.Path)
				}
				sets[i][p.Path] = true
			}
		}
		b := Bound{Workload: w.Name(), Shape: w.Shape}
		seen := map[string]bool{}
		for i, s := range sets {
			var total, shared int64
			classes := map[string]bool{}
			key := make([]byte, len(sets)-i-1)
			for p := range s {
				total += sizes.Paths[p]
				if seen[p] {
					continue
				}
				seen[p] = true
				b.IdealBytes += sizes.Paths[p]
				for j := range key {
					key[j] = '0'
					if sets[i+1+j][p] {
						key[j] = '1'
					}
				}
				classes[string(key)] = true
			}
			for _, t := range sets[:i] {
				var common int64
				for p := range s {
					if t[p] {
						common += sizes.Paths[p]
					}
				}
				shared = max(shared, common)
			}
			b.ChainBytes += total - shared
			b.IdealLayers += len(classes)
		}
		out = append(out, b)
	}
	return out, nil
}
