// Package closure models the runtime closure of a set of Nix store paths: a
// directed acyclic graph whose nodes are store paths and whose edges are the
// references Nix recorded when it scanned each path's output.
//
// A [Graph] is immutable once built with [New]. Nodes are kept sorted by store
// path, so every walk over a graph, and every result derived from one, is the
// same whatever order Nix printed the paths in.
//
// # Worked example
//
// Realising curl gives, among others, these paths (hashes shortened):
//
//	/nix/store/aaa-curl-8.0       -> libcurl, openssl, zlib, glibc
//	/nix/store/bbb-libcurl-8.0    -> openssl, zlib, glibc
//	/nix/store/ccc-openssl-3.0    -> glibc
//	/nix/store/ddd-zlib-1.2       -> glibc
//	/nix/store/eee-glibc-2.36     -> glibc (a self-reference)
//
// [Graph.TopoOrder] lists glibc before openssl and zlib, and those before
// libcurl and curl. [Graph.ClosureSize] of libcurl is the NAR size of libcurl,
// openssl, zlib and glibc together. [Compute] counts, for each path, how many
// other paths in the graph reference it: glibc gets 4, openssl and zlib 2,
// libcurl 1, curl 0.
package closure

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nixery-go/nixery/internal/minheap"
)

// StoreDir is the Nix store every path must live in.
const StoreDir = "/nix/store"

// Path is one store path with the metadata Nix records for it.
type Path struct {
	// Path is the absolute store path, /nix/store/<hash>-<name>.
	Path string `json:"path"`
	// NarSize is the size in bytes of the path's NAR serialisation.
	NarSize int64 `json:"narSize"`
	// NarHash is Nix's hash of the NAR, as Nix printed it.
	NarHash string `json:"narHash,omitempty"`
	// References are the store paths this path refers to at run time,
	// sorted, possibly including the path itself.
	References []string `json:"references"`
}

// Name returns the store path's name without the store directory and hash:
// "/nix/store/eee-glibc-2.36" gives "glibc-2.36". A string that is not a store
// path is returned with its directory stripped.
func Name(storePath string) string {
	base := storePath
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	if i := strings.IndexByte(base, '-'); i >= 0 {
		return base[i+1:]
	}
	return base
}

// Errors returned by [New] and the parsers, for use with [errors.Is].
var (
	ErrInvalidPath     = errors.New("closure: invalid store path")
	ErrDuplicatePath   = errors.New("closure: duplicate store path")
	ErrDanglingRef     = errors.New("closure: reference to a path outside the graph")
	ErrCycle           = errors.New("closure: reference cycle")
	ErrUnknownRoot     = errors.New("closure: root not in graph")
	ErrNegativeNarSize = errors.New("closure: negative NAR size")
)

// ValidStorePath reports whether p looks like /nix/store/<32 base32 chars>-<name>
// with no further slashes.
func ValidStorePath(p string) bool {
	rest, ok := strings.CutPrefix(p, StoreDir+"/")
	if !ok || len(rest) < 34 || rest[32] != '-' {
		return false
	}
	for i := 0; i < 32; i++ {
		if !strings.ContainsRune(nixBase32, rune(rest[i])) {
			return false
		}
	}
	for _, c := range rest[33:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+-._?=", c)) {
			return false
		}
	}
	return true
}

// nixBase32 is the alphabet of Nix's base-32 hashes (no e, o, u, t).
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// Graph is an immutable DAG of store paths. The zero value is an empty graph.
type Graph struct {
	paths []Path         // sorted by Path
	index map[string]int // Path -> position in paths
	refs  [][]int        // outgoing edges by index, sorted, self-references dropped
	users [][]int        // incoming edges by index, sorted
	roots []int          // sorted
	topo  []int          // dependencies before dependants, ties by index
}

// New builds a graph from paths. Every reference must name a path in the set
// (a self-reference is allowed) and the references must not form a cycle.
// roots names the paths that were asked for; when roots is empty, the roots
// are the paths nothing else references. New copies its inputs.
func New(paths []Path, roots []string) (*Graph, error) {
	g := &Graph{
		paths: make([]Path, len(paths)),
		index: make(map[string]int, len(paths)),
	}
	for i, p := range paths {
		if !ValidStorePath(p.Path) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidPath, p.Path)
		}
		if p.NarSize < 0 {
			return nil, fmt.Errorf("%w: %s", ErrNegativeNarSize, p.Path)
		}
		p.References = append([]string(nil), p.References...)
		sort.Strings(p.References)
		g.paths[i] = p
	}
	sort.Slice(g.paths, func(i, j int) bool { return g.paths[i].Path < g.paths[j].Path })
	for i, p := range g.paths {
		if _, dup := g.index[p.Path]; dup {
			return nil, fmt.Errorf("%w: %s", ErrDuplicatePath, p.Path)
		}
		g.index[p.Path] = i
	}
	g.refs = make([][]int, len(g.paths))
	g.users = make([][]int, len(g.paths))
	for i, p := range g.paths {
		var prev string
		for _, r := range p.References {
			if r == prev {
				continue // duplicate reference
			}
			prev = r
			j, ok := g.index[r]
			if !ok {
				return nil, fmt.Errorf("%w: %s references %s", ErrDanglingRef, p.Path, r)
			}
			if j == i {
				continue
			}
			g.refs[i] = append(g.refs[i], j)
			g.users[j] = append(g.users[j], i)
		}
	}
	for j := range g.users {
		sort.Ints(g.users[j])
	}
	if err := g.sortTopo(); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		for i := range g.paths {
			if len(g.users[i]) == 0 {
				g.roots = append(g.roots, i)
			}
		}
	} else {
		seen := map[int]bool{}
		for _, r := range roots {
			i, ok := g.index[r]
			if !ok {
				return nil, fmt.Errorf("%w: %s", ErrUnknownRoot, r)
			}
			if !seen[i] {
				seen[i] = true
				g.roots = append(g.roots, i)
			}
		}
		sort.Ints(g.roots)
	}
	return g, nil
}

// sortTopo orders nodes dependencies first (Kahn's algorithm over the
// reverse edges, always taking the lowest index that is ready).
func (g *Graph) sortTopo() error {
	n := len(g.paths)
	pending := make([]int, n) // unresolved dependencies per node
	ready := minheap.New(func(a, b int) bool { return a < b })
	for i := range g.paths {
		pending[i] = len(g.refs[i])
		if pending[i] == 0 {
			ready.Push(i)
		}
	}
	g.topo = make([]int, 0, n)
	for ready.Len() > 0 {
		i := ready.Pop()
		g.topo = append(g.topo, i)
		for _, u := range g.users[i] {
			pending[u]--
			if pending[u] == 0 {
				ready.Push(u)
			}
		}
	}
	if len(g.topo) != n {
		for i := range pending {
			if pending[i] > 0 {
				return fmt.Errorf("%w through %s", ErrCycle, g.paths[i].Path)
			}
		}
	}
	return nil
}

// Len returns the number of store paths in the graph.
func (g *Graph) Len() int { return len(g.paths) }

// Paths returns the graph's paths sorted by store path. The caller must not
// modify the result.
func (g *Graph) Paths() []Path { return g.paths }

// Lookup returns the path named p.
func (g *Graph) Lookup(p string) (Path, bool) {
	i, ok := g.index[p]
	if !ok {
		return Path{}, false
	}
	return g.paths[i], true
}

// Index returns the position of p in [Graph.Paths], or -1.
func (g *Graph) Index(p string) int {
	if i, ok := g.index[p]; ok {
		return i
	}
	return -1
}

// Refs returns the indices of the paths that the path at index i references,
// sorted, without self-references. The caller must not modify the result.
func (g *Graph) Refs(i int) []int { return g.refs[i] }

// Users returns the indices of the paths that reference the path at index i,
// sorted. The caller must not modify the result.
func (g *Graph) Users(i int) []int { return g.users[i] }

// Roots returns the root paths, sorted.
func (g *Graph) Roots() []string { return g.names(g.roots) }

// RootIndices returns the indices of the roots, sorted. The caller must not
// modify the result.
func (g *Graph) RootIndices() []int { return g.roots }

// TopoOrder returns every path once, each after all the paths it references.
// Ties are broken by store path, so the order is deterministic.
func (g *Graph) TopoOrder() []string { return g.names(g.topo) }

// TopoIndices is [Graph.TopoOrder] as indices. The caller must not modify
// the result.
func (g *Graph) TopoIndices() []int { return g.topo }

// ClosureSize returns the total NAR size of p and everything it references,
// directly or not. It is 0 for a path outside the graph.
func (g *Graph) ClosureSize(p string) int64 {
	i, ok := g.index[p]
	if !ok {
		return 0
	}
	var total int64
	for _, j := range g.closure([]int{i}) {
		total += g.paths[j].NarSize
	}
	return total
}

// Closure returns the given paths and everything they reference, sorted.
// Paths outside the graph are ignored.
func (g *Graph) Closure(paths ...string) []string {
	var start []int
	for _, p := range paths {
		if i, ok := g.index[p]; ok {
			start = append(start, i)
		}
	}
	return g.names(g.closure(start))
}

// closure returns the sorted indices reachable from start (inclusive).
func (g *Graph) closure(start []int) []int {
	seen := make([]bool, len(g.paths))
	var stack []int
	for _, i := range start {
		if !seen[i] {
			seen[i] = true
			stack = append(stack, i)
		}
	}
	var out []int
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out = append(out, i)
		for _, j := range g.refs[i] {
			if !seen[j] {
				seen[j] = true
				stack = append(stack, j)
			}
		}
	}
	sort.Ints(out)
	return out
}

// Subgraph returns the closure of roots as a graph of its own, with roots as
// its roots.
func (g *Graph) Subgraph(roots ...string) (*Graph, error) {
	var start []int
	for _, r := range roots {
		i, ok := g.index[r]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUnknownRoot, r)
		}
		start = append(start, i)
	}
	idx := g.closure(start)
	paths := make([]Path, len(idx))
	for k, i := range idx {
		paths[k] = g.paths[i]
	}
	return New(paths, roots)
}

func (g *Graph) names(idx []int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = g.paths[i].Path
	}
	return out
}
