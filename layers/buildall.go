package layers

import (
	"context"
	"sync"
)

// LayerParallelism is how many layers of one image [BuildAll] builds at
// once. Two let one layer be compressed while the one before it is
// committed: with an object store, a commit is the upload of the whole
// blob, as long as its compression, and the two then overlap (see
// BenchmarkAssemblyStore in benchmarks/speed). Layers' digests do not
// depend on it.
const LayerParallelism = 2

// BuildAll builds a layer of each group with build, up to
// [LayerParallelism] at once, and returns their descriptors in the order of
// groups. done, if not nil, is called once for each layer built, in the
// order they finish, never concurrently. At the first error BuildAll
// cancels the builds under way and returns it; the layers built by then
// are in the store, but not returned.
func BuildAll(ctx context.Context, groups [][]string, build func(context.Context, []string) (Descriptor, error), done func(i int, d Descriptor)) ([]Descriptor, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		d   Descriptor
		err error
	}
	results := make(chan result)
	sem := make(chan struct{}, LayerParallelism)
	var wg sync.WaitGroup
	go func() {
		defer func() { wg.Wait(); close(results) }()
		for i, g := range groups {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if ctx.Err() != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := build(ctx, g)
				<-sem
				results <- result{i, d, err}
			}()
		}
	}()
	ds := make([]Descriptor, len(groups))
	var first error
	for r := range results {
		if first != nil {
			continue
		}
		if r.err != nil {
			first = r.err
			cancel()
			continue
		}
		ds[r.i] = r.d
		if done != nil {
			done(r.i, r.d)
		}
	}
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		return nil, first
	}
	return ds, nil
}
