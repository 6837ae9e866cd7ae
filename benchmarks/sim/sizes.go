package sim

import (
	"context"
	"fmt"
	"sync"

	"github.com/nixery-go/nixery/layers"
)

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

// MeasureSizes returns the exact compressed size of every path as nixery
// serves it. asm builds one layer of each path alone (a path is compressed
// once into asm's member cache, and its layer is found in asm's layer cache
// on later runs); nixery's layer blob is a header member, the members of its
// paths and a trailer member, so a layer of several paths is as large as
// the sum of their members plus the two framing members, and the framing is
// the sizes of two one-path layers less that of the layer holding both. At
// least two paths are needed. workers layers are built at once (at least
// 1).
func MeasureSizes(ctx context.Context, asm *layers.Assembler, paths []string, workers int) (Sizes, error) {
	if len(paths) < 2 {
		return Sizes{}, fmt.Errorf("sim: measuring sizes needs at least two store paths, got %d", len(paths))
	}
	single := make([]int64, len(paths))
	errs := make([]error, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < max(workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d, err := asm.Layer(ctx, paths[i:i+1])
				single[i], errs[i] = d.Size, err
			}
		}()
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, p := range paths {
		if errs[i] != nil {
			return Sizes{}, fmt.Errorf("sim: measuring %s: %w", p, errs[i])
		}
	}
	pair, err := asm.Layer(ctx, paths[:2])
	if err != nil {
		return Sizes{}, fmt.Errorf("sim: measuring the layer framing: %w", err)
	}
	s := Sizes{Paths: make(map[string]int64, len(paths)), Overhead: single[0] + single[1] - pair.Size}
	for i, p := range paths {
		s.Paths[p] = single[i] - s.Overhead
	}
	return s, nil
}
