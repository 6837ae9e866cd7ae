package sim

import (
	"sort"
	"strings"

	"github.com/nixery-go/nixery/closure"
)

// Upstream Nixery's constants (layers/layers.go upstream, see PEERS.md).
const (
	nixeryBigClosure = 100 << 20 // closure size that gives a path its own root edge
	nixeryPopular    = 100       // popularity that does the same
	nixeryForcedPop  = 500000    // nss-cacert* and iana-etc*
)

// nixeryPopularity is upstream Nixery's popularity lookup: by name without
// hash, missing names count 1, and the CA bundle and iana-etc are forced
// very popular.
func nixeryPopularity(pop closure.Popularity, storePath string) int64 {
	name := closure.Name(storePath)
	if strings.HasPrefix(name, "nss-cacert") || strings.HasPrefix(name, "iana-etc") {
		return nixeryForcedPop
	}
	if v, ok := pop[name]; ok {
		return v
	}
	return 1
}

// NixeryDominator is upstream Nixery's layering: a virtual root gets an edge
// to every top-level path of the image and to every path that is big
// (closure over 100 MiB) or popular (popularity >= 100), besides the
// reference edges. Each node the root immediately dominates starts a layer
// holding everything it dominates, rated popularity x layer size. Layers are
// sorted by rating, ascending, and while there are more than budget the two
// lowest merge (ratings added, no re-sort), so the lowest-rated layers
// collapse into one. Ties, which upstream leaves to an unstable sort, go to
// the lower store path.
func NixeryDominator(g *closure.Graph, pop closure.Popularity, budget int) [][]string {
	n := g.Len()
	if n == 0 {
		return nil
	}
	budget = max(budget, 1)
	paths := g.Paths()
	root := n // the virtual root's index
	succ := make([][]int, n+1)
	for i := 0; i < n; i++ {
		succ[i] = g.Refs(i)
	}
	closureSize := make([]int64, n)
	for i := 0; i < n; i++ {
		closureSize[i] = g.ClosureSize(paths[i].Path)
	}
	rootEdge := make([]bool, n)
	for _, r := range g.RootIndices() {
		rootEdge[r] = true
	}
	for _, r := range topLevel(g) {
		rootEdge[r] = true
	}
	for i := 0; i < n; i++ {
		if closureSize[i] > nixeryBigClosure || nixeryPopularity(pop, paths[i].Path) >= nixeryPopular {
			rootEdge[i] = true
		}
		if rootEdge[i] {
			succ[root] = append(succ[root], i)
		}
	}
	idom := dominators(succ, root)

	// Each node immediately dominated by the root heads a layer.
	top := make([]int, n) // the root-child each node lies under
	var order []int       // root children, in index order
	for i := 0; i < n; i++ {
		if idom[i] == root {
			order = append(order, i)
		}
	}
	for i := 0; i < n; i++ {
		t := i
		for idom[t] != root {
			t = idom[t]
		}
		top[i] = t
	}
	type layer struct {
		head     int
		rating   float64
		contents []string
	}
	byHead := map[int]*layer{}
	var ls []*layer
	for _, h := range order {
		l := &layer{head: h}
		byHead[h] = l
		ls = append(ls, l)
	}
	size := map[int]int64{}
	for i := 0; i < n; i++ {
		l := byHead[top[i]]
		l.contents = append(l.contents, paths[i].Path)
		size[top[i]] += paths[i].NarSize
	}
	for _, l := range ls {
		l.rating = float64(nixeryPopularity(pop, paths[l.head].Path)) * float64(size[l.head])
	}
	sort.SliceStable(ls, func(a, b int) bool {
		if ls[a].rating != ls[b].rating {
			return ls[a].rating < ls[b].rating
		}
		return ls[a].head < ls[b].head
	})
	for len(ls) > budget {
		merged := &layer{head: ls[0].head, rating: ls[0].rating + ls[1].rating,
			contents: append(append([]string(nil), ls[0].contents...), ls[1].contents...)}
		ls[1] = merged
		ls = ls[1:]
	}
	// Highest rating first in the manifest.
	sort.SliceStable(ls, func(a, b int) bool {
		if ls[a].rating != ls[b].rating {
			return ls[a].rating > ls[b].rating
		}
		return ls[a].head < ls[b].head
	})
	out := make([][]string, len(ls))
	for i, l := range ls {
		sort.Strings(l.contents)
		out[i] = l.contents
	}
	return out
}

// dominators returns the immediate dominator of every node of the graph
// succ reachable from root (Cooper, Harvey and Kennedy's iterative
// algorithm). idom[root] is root; unreachable nodes get -1.
func dominators(succ [][]int, root int) []int {
	n := len(succ)
	// Reverse postorder by an iterative depth-first search.
	post := make([]int, 0, n)
	num := make([]int, n) // postorder number, -1 = unvisited
	for i := range num {
		num[i] = -1
	}
	visited := make([]bool, n)
	type frame struct{ v, next int }
	stack := []frame{{root, 0}}
	visited[root] = true
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next < len(succ[f.v]) {
			w := succ[f.v][f.next]
			f.next++
			if !visited[w] {
				visited[w] = true
				stack = append(stack, frame{w, 0})
			}
			continue
		}
		num[f.v] = len(post)
		post = append(post, f.v)
		stack = stack[:len(stack)-1]
	}
	preds := make([][]int, n)
	for v := range succ {
		if !visited[v] {
			continue
		}
		for _, w := range succ[v] {
			preds[w] = append(preds[w], v)
		}
	}
	idom := make([]int, n)
	for i := range idom {
		idom[i] = -1
	}
	idom[root] = root
	intersect := func(a, b int) int {
		for a != b {
			for num[a] < num[b] {
				a = idom[a]
			}
			for num[b] < num[a] {
				b = idom[b]
			}
		}
		return a
	}
	for changed := true; changed; {
		changed = false
		for k := len(post) - 1; k >= 0; k-- {
			v := post[k]
			if v == root {
				continue
			}
			nd := -1
			for _, p := range preds[v] {
				if idom[p] < 0 {
					continue
				}
				if nd < 0 {
					nd = p
				} else {
					nd = intersect(p, nd)
				}
			}
			if nd != idom[v] {
				idom[v] = nd
				changed = true
			}
		}
	}
	return idom
}
