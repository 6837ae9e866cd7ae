package sim

// SyntheticOverhead is the per-layer overhead [SyntheticSizes] uses, about
// what nixery's layer format adds (two small gzip members).
const SyntheticOverhead = 60

// SyntheticSizes gives every path of a synthetic universe a compressed size
// of a third of its NAR size, varied by ±20% with the path's hash so that
// equal NAR sizes do not give equal compressed sizes.
func SyntheticSizes(u *Universe) Sizes {
	s := Sizes{Paths: map[string]int64{}, Overhead: SyntheticOverhead}
	for _, p := range u.Graph.Paths() {
		var h uint64
		for _, c := range []byte(p.Path) {
			h = (h ^ uint64(c)) * 1099511628211
		}
		f := 0.8 + 0.4*float64(h%1000)/1000
		s.Paths[p.Path] = int64(float64(p.NarSize) / 3 * f)
	}
	return s
}
