package sim

import (
	"math/bits"
	"sort"
	"strings"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
)

// Algorithm is a layering algorithm under comparison: it partitions the
// closure graph of one image into at most budget layers of store paths.
type Algorithm struct {
	// Name is the short name used in tables and plots.
	Name string
	// Group returns the layers, each a set of store paths.
	Group func(g *closure.Graph, pop closure.Popularity, budget int) [][]string
}

// Algorithms returns the comparators in the order the report lists them:
// one layer per image, the size-greedy baseline, nixpkgs' popularity
// contest, nixpkgs' auto-layer, upstream Nixery's dominator grouping and
// this project's [layers.Group].
func Algorithms() []Algorithm {
	return []Algorithm{
		{Name: "single-layer", Group: SingleLayer},
		{Name: "size-greedy", Group: SizeGreedy},
		{Name: "popularity-contest", Group: PopularityContest},
		{Name: "auto-layer", Group: AutoLayer},
		{Name: "nixery-dominator", Group: NixeryDominator},
		{Name: "nixery-go", Group: layers.Group},
	}
}

// Ours is the name of the project's own algorithm in [Algorithms].
const Ours = "nixery-go"

// SingleLayer puts the whole closure into one layer.
func SingleLayer(g *closure.Graph, _ closure.Popularity, _ int) [][]string {
	if g.Len() == 0 {
		return nil
	}
	return [][]string{allPaths(g)}
}

// SizeGreedy is the naive baseline of issue 14's independent evaluation:
// the budget-1 largest paths (by NAR size, ties by store path) each in a
// layer of its own, largest first, and all the others in one last layer.
func SizeGreedy(g *closure.Graph, _ closure.Popularity, budget int) [][]string {
	n := g.Len()
	if n == 0 {
		return nil
	}
	budget = max(budget, 1)
	paths := g.Paths()
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		i, j := order[a], order[b]
		if paths[i].NarSize != paths[j].NarSize {
			return paths[i].NarSize > paths[j].NarSize
		}
		return paths[i].Path < paths[j].Path
	})
	alone := min(budget-1, n)
	if alone == n-1 {
		alone = n // the last path would be a layer of its own anyway
	}
	out := make([][]string, 0, alone+1)
	for _, i := range order[:alone] {
		out = append(out, []string{paths[i].Path})
	}
	if alone < n {
		rest := make([]string, 0, n-alone)
		for _, i := range order[alone:] {
			rest = append(rest, paths[i].Path)
		}
		sort.Strings(rest)
		out = append(out, rest)
	}
	return out
}

func allPaths(g *closure.Graph) []string {
	out := make([]string, g.Len())
	for i, p := range g.Paths() {
		out[i] = p.Path
	}
	return out
}

// topLevel returns the indices of the paths that no other path of g
// references, sorted.
func topLevel(g *closure.Graph) []int {
	var out []int
	for i := 0; i < g.Len(); i++ {
		if len(g.Users(i)) == 0 {
			out = append(out, i)
		}
	}
	return out
}

// ContestPopularity computes nixpkgs' referencesByPopularity counts for the
// image graph g: the graph is unrolled into a tree from every path that
// nothing references, and each path's count is, recursively, 1 for every
// occurrence as a direct child plus, for every child c it is a descendant
// of, c's own count for it plus 1. For the graph A->B,G; B->C,E; C->D,E;
// D->F; E->F it gives A1 B2 C3 D4 E5 F9 G2. Counts grow with the number of
// ways a path is reached, which is exponential in the depth of a DAG, so
// they are float64.
func ContestPopularity(g *closure.Graph) []float64 {
	n := g.Len()
	// k[v][x]: contest count of x within the forest of v's children;
	// has[v][x]: x is a strict descendant of v.
	k := make([][]float64, n)
	has := make([][]bool, n)
	for _, v := range g.TopoIndices() { // dependencies first
		kv, hv := make([]float64, n), make([]bool, n)
		for _, c := range g.Refs(v) {
			kv[c]++
			hv[c] = true
			for x := 0; x < n; x++ {
				if has[c][x] {
					kv[x] += k[c][x] + 1
					hv[x] = true
				}
			}
		}
		k[v], has[v] = kv, hv
	}
	out := make([]float64, n)
	for _, r := range topLevel(g) {
		out[r]++
		for x := 0; x < n; x++ {
			if has[r][x] {
				out[x] += k[r][x] + 1
			}
		}
	}
	return out
}

// PopularityContest is nixpkgs' referencesByPopularity with
// buildLayeredImage's layer split: paths sorted by [ContestPopularity]
// descending (ties by name without hash, then by store path), the first
// budget-1 each in a layer of their own and all the others in one last
// layer.
func PopularityContest(g *closure.Graph, _ closure.Popularity, budget int) [][]string {
	n := g.Len()
	if n == 0 {
		return nil
	}
	budget = max(budget, 1)
	pc := ContestPopularity(g)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	paths := g.Paths()
	sort.SliceStable(order, func(a, b int) bool {
		i, j := order[a], order[b]
		if pc[i] != pc[j] {
			return pc[i] > pc[j]
		}
		if ni, nj := closure.Name(paths[i].Path), closure.Name(paths[j].Path); ni != nj {
			return ni < nj
		}
		return i < j
	})
	var out [][]string
	for k, i := range order {
		if k < budget-1 || n <= budget {
			out = append(out, []string{paths[i].Path})
			continue
		}
		if len(out) < budget {
			out = append(out, nil)
		}
		out[budget-1] = append(out[budget-1], paths[i].Path)
	}
	sort.Strings(out[len(out)-1])
	return out
}

// AutoLayer is nixpkgs' auto-layer as PEERS.md describes it: the top-level
// paths and then the largest store paths (by NAR size, ties by store path)
// are layer roots; every other path belongs to the set of roots through
// which it is used (the roots reaching it without passing another root). A
// path used through one root joins that root's layer; paths used through the
// same several roots share a layer. Roots are added, largest first, as long
// as the layers fit the budget. If even the top-level paths alone need more
// layers than the budget, the smallest layers are merged into one.
func AutoLayer(g *closure.Graph, _ closure.Popularity, budget int) [][]string {
	n := g.Len()
	if n == 0 {
		return nil
	}
	budget = max(budget, 1)
	paths := g.Paths()
	isRoot := make([]bool, n)
	for _, r := range topLevel(g) {
		isRoot[r] = true
	}
	cands := make([]int, 0, n)
	for i := range paths {
		if !isRoot[i] {
			cands = append(cands, i)
		}
	}
	sort.SliceStable(cands, func(a, b int) bool {
		i, j := cands[a], cands[b]
		if paths[i].NarSize != paths[j].NarSize {
			return paths[i].NarSize > paths[j].NarSize
		}
		return i < j
	})
	best := autoLayers(g, isRoot)
	for _, c := range cands {
		if len(best) >= budget {
			break
		}
		isRoot[c] = true
		next := autoLayers(g, isRoot)
		if len(next) > budget {
			break
		}
		best = next
	}
	if len(best) > budget {
		best = mergeSmallest(g, best, budget)
	}
	return best
}

// autoLayers groups g's paths by the set of layer roots they are used
// through. Layers used through more roots come first (PEERS.md does not say
// how auto-layer orders layers; most shared first is what the Docker
// engine's chain rule rewards).
func autoLayers(g *closure.Graph, isRoot []bool) [][]string {
	n := g.Len()
	paths := g.Paths()
	rootID := make([]int, n)
	nr := 0
	for i := range isRoot {
		rootID[i] = -1
		if isRoot[i] {
			rootID[i] = nr
			nr++
		}
	}
	words := (nr + 63) / 64
	owners := make([][]uint64, n)
	topo := g.TopoIndices()
	for t := len(topo) - 1; t >= 0; t-- { // users before dependencies
		i := topo[t]
		set := make([]uint64, words)
		if isRoot[i] {
			set[rootID[i]/64] |= 1 << (rootID[i] % 64)
		} else {
			for _, u := range g.Users(i) {
				for w, b := range owners[u] {
					set[w] |= b
				}
			}
		}
		owners[i] = set
	}
	byKey := map[string]int{}
	var out [][]string
	var users []int        // per layer: how many roots use it
	for i := range paths { // sorted by path, so layers are sorted
		var b strings.Builder
		for _, w := range owners[i] {
			for s := 0; s < 64; s += 8 {
				b.WriteByte(byte(w >> s))
			}
		}
		key := b.String()
		l, ok := byKey[key]
		if !ok {
			l = len(out)
			byKey[key] = l
			out = append(out, nil)
			n := 0
			for _, w := range owners[i] {
				n += bits.OnesCount64(w)
			}
			users = append(users, n)
		}
		out[l] = append(out[l], paths[i].Path)
	}
	// Most shared first (more users), then by first path.
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return users[order[a]] > users[order[b]] })
	sorted := make([][]string, len(out))
	for i, l := range order {
		sorted[i] = out[l]
	}
	return sorted
}

// mergeSmallest keeps the budget-1 largest layers (by NAR size, ties by
// first path) and merges the others into one.
func mergeSmallest(g *closure.Graph, ls [][]string, budget int) [][]string {
	size := func(l []string) int64 {
		var s int64
		for _, p := range l {
			q, _ := g.Lookup(p)
			s += q.NarSize
		}
		return s
	}
	sort.SliceStable(ls, func(a, b int) bool {
		sa, sb := size(ls[a]), size(ls[b])
		if sa != sb {
			return sa > sb
		}
		return ls[a][0] < ls[b][0]
	})
	var rest []string
	for _, l := range ls[budget-1:] {
		rest = append(rest, l...)
	}
	sort.Strings(rest)
	return append(ls[:budget-1:budget-1], rest)
}
