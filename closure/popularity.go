package closure

import (
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
)

// Popularity maps a store path name without its hash ("glibc-2.36") to how
// many store paths of a package set depend on it. Upstream Nixery publishes
// such maps as JSON objects, {"glibc-2.27": 302401, ...}; [Compute] derives one
// from a graph.
type Popularity map[string]int64

// LoadPopularity reads an upstream Nixery popularity file: one JSON object
// from names to non-negative counts.
func LoadPopularity(r io.Reader) (Popularity, error) {
	var p Popularity
	dec := json.NewDecoder(r)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: popularity: %v", ErrSyntax, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: popularity: trailing data", ErrSyntax)
	}
	for k, v := range p {
		if v < 0 {
			return nil, fmt.Errorf("%w: popularity: negative count for %q", ErrSyntax, k)
		}
	}
	if p == nil {
		p = Popularity{}
	}
	return p, nil
}

// Of returns the popularity of a store path (looked up by [Name]) and whether
// the map has it.
func (p Popularity) Of(storePath string) (int64, bool) {
	v, ok := p[Name(storePath)]
	return v, ok
}

// Compute returns a popularity map for g: for each path, the number of other
// paths in g whose closure contains it, that is, which reference it directly
// or through other paths. Paths that share a name add up. Run it on the graph
// of a whole package set (every attribute realised) to get the package set's
// own popularity, the same measure upstream Nixery computes for nixpkgs.
//
// For the closure package example (curl -> libcurl -> openssl, zlib -> glibc)
// it gives glibc 4, openssl 2, zlib 2, libcurl 1 and curl 0.
func Compute(g *Graph) Popularity {
	n := g.Len()
	words := (n + 63) / 64
	// below[i] is the set of paths in the closure of i, itself excluded.
	below := make([][]uint64, n)
	for _, i := range g.TopoIndices() { // dependencies first
		set := make([]uint64, words)
		for _, j := range g.Refs(i) {
			set[j/64] |= 1 << (j % 64)
			for w, b := range below[j] {
				set[w] |= b
			}
		}
		below[i] = set
	}
	counts := make([]int64, n)
	for i := range below {
		for w, b := range below[i] {
			for b != 0 {
				t := bits.TrailingZeros64(b)
				counts[w*64+t]++
				b &= b - 1
			}
		}
	}
	pop := make(Popularity, n)
	for i, p := range g.Paths() {
		pop[Name(p.Path)] += counts[i]
	}
	return pop
}
