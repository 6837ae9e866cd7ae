package layers

// # Grouping
//
// [Group] decides which store paths share a layer. A client that already holds
// a layer skips it, and a layer is identified by its exact set of store paths,
// so the aim is that the same store paths form the same layers in different
// images as often as possible. A layer's contents therefore depend on
// properties of the paths themselves (their popularity in the package set,
// their size and their references) and as little as possible on which other
// packages happen to share the image.
//
// The popularity of a path (see [closure.Compute]) is the number of paths of
// the package set whose closure holds it, that is, the number of its
// ancestors. For a path P referenced by Q, pop(P) >= pop(Q)+1, and equality
// means every ancestor of P is Q or an ancestor of Q: whenever P is in an
// image and was not asked for directly, Q is there too. Putting P in Q's layer
// then costs no sharing at all, in any image.
//
// Group works in three steps:
//
//  1. Parent. Each path's parent is the path referencing it (in the image)
//     with the highest popularity, ties to the lower store path. It is the
//     referrer most likely to come along with it.
//  2. Atoms. A path joins its parent's layer for free when
//     pop(P) <= pop(parent)+1 (the paths always travel together). Paths
//     missing from the popularity map count 0, so they stay with their
//     referrers. The free edges form trees; each tree is an atom. If the atoms
//     fit the budget, each atom is a layer and Group is done. The atom of a
//     path is the same in every image holding the path's top-most free
//     ancestor, so images that share a sub-closure share its layers.
//  3. Merges. While there are more groups than the budget, the group whose
//     merge into its head's parent's group is expected to duplicate the fewest
//     bytes is merged there. The expected duplication of merging group G (head
//     H, parent Q) is bytes(G) * (1 - (pop(Q)+1)/pop(H)): the share of images
//     holding H that do not hold Q, times the bytes that would then travel in
//     a second, different layer. Large popular paths (glibc) thus keep layers
//     of their own longest; small paths mostly used through one referrer merge
//     first. Ties go to the lower head store path. When only groups without a
//     parent remain (the image's top-level paths) and they still exceed the
//     budget, the least popular of them (then smallest, then by store path)
//     are merged into one.
//
// Layers are returned most shared first: by the highest popularity in the
// layer, then by size (larger first), then by first store path. Each layer's
// paths are sorted.
//
// # Worked example
//
// An image holding curl, with popularities from the package set and NAR sizes:
//
//	path      pop   size   references
//	curl        2   0.5M   libcurl glibc
//	libcurl    12     1M   openssl zlib nghttp2 glibc
//	nghttp2    13   0.2M   glibc
//	openssl   150     6M   zlib glibc
//	zlib      300   0.1M   glibc
//	glibc     900    30M
//
// Parents: libcurl -> curl, nghttp2 -> libcurl, openssl -> libcurl,
// zlib -> openssl (pop 150 beats libcurl's 12), glibc -> zlib. Only nghttp2's
// edge is free (13 = 12+1: nghttp2 is used by libcurl alone), so the atoms
// are {curl}, {libcurl, nghttp2}, {openssl}, {zlib} and {glibc}. With the
// default budget these are the five layers, glibc first.
//
// With a budget of 3, two merges are needed. Expected duplications:
// {libcurl, nghttp2} into curl 1.2M*(1-3/12) = 0.9M; openssl into libcurl
// 6M*(1-13/150) = 5.5M; zlib into openssl 0.1M*(1-151/300) = 0.05M; glibc into
// zlib 30M*(1-301/900) = 20M. zlib merges into openssl first, then libcurl
// and nghttp2 into curl, giving the layers {glibc}, {openssl, zlib} and
// {curl, libcurl, nghttp2}.

import (
	"container/heap"
	"sort"

	"github.com/nixery-go/nixery/closure"
)

// DefaultBudget is the default number of store-path layers per image. Docker
// refuses images with more than 125 layers (overlayfs' stacking limit, less
// a margin); 100 leaves room for the customisation layer that holds the
// image's symlink forest and for a few more layers stacked on top by users
// who build FROM the image.
const DefaultBudget = 100

// Group partitions the store paths of g into at most budget layers, aiming
// for cross-image reuse of layers as explained in the package documentation.
// pop is the package set's popularity ([closure.Compute] on the whole set);
// a nil map is allowed. A budget below 1 means [DefaultBudget].
//
// Every path of g is in exactly one layer. Each layer is sorted, layers are
// ordered most shared first, and the result depends only on g, pop and
// budget, never on the order in which Nix listed the paths.
func Group(g *closure.Graph, pop closure.Popularity, budget int) [][]string {
	n := g.Len()
	if n == 0 {
		return nil
	}
	if budget < 1 {
		budget = DefaultBudget
	}
	paths := g.Paths()
	p := make([]int64, n)
	for i, path := range paths {
		p[i], _ = pop.Of(path.Path) // missing names count 0
	}

	// Step 1: parents.
	parent := make([]int, n)
	for i := range parent {
		parent[i] = -1
		for _, u := range g.Users(i) { // sorted: ties go to the lower path
			if parent[i] < 0 || p[u] > p[parent[i]] {
				parent[i] = u
			}
		}
	}

	// Step 2: atoms, joined along free edges.
	uf := newUnionFind(n)
	for i := range parent {
		if q := parent[i]; q >= 0 && p[i] <= p[q]+1 {
			uf.union(q, i) // q's root stays the representative
		}
	}
	// Per group (indexed by representative): head, bytes, member count.
	head := make([]int, n)
	bytes := make([]int64, n)
	for i := range head {
		head[i] = -1
	}
	groups := 0
	for _, i := range g.TopoIndices() {
		r := uf.find(i)
		bytes[r] += paths[i].NarSize
		if q := parent[i]; q < 0 || uf.find(q) != r {
			head[r] = i // the one member whose parent is elsewhere
			groups++
		}
	}

	// Step 3: merges along parent edges, cheapest expected duplication first.
	if groups > budget {
		cost := func(r int) float64 {
			hd := head[r]
			q := parent[hd]
			return float64(bytes[r]) * (1 - float64(p[q]+1)/float64(p[hd]))
		}
		h := &mergeHeap{}
		for r := range head {
			if head[r] >= 0 && parent[head[r]] >= 0 {
				h.items = append(h.items, mergeItem{cost: cost(r), head: head[r], bytes: bytes[r]})
			}
		}
		heap.Init(h)
		for groups > budget && h.Len() > 0 {
			it := heap.Pop(h).(mergeItem)
			r := uf.find(it.head)
			if head[r] != it.head {
				continue // merged into another group already
			}
			if bytes[r] != it.bytes { // grew since it was queued
				heap.Push(h, mergeItem{cost: cost(r), head: it.head, bytes: bytes[r]})
				continue
			}
			into := uf.find(parent[it.head])
			hi, bi := head[into], bytes[into]
			head[r], head[into] = -1, -1
			nr := uf.union(into, r)
			head[nr], bytes[nr] = hi, bi+bytes[r]
			groups--
		}
	}

	// Collect the groups.
	type layer struct {
		rep   int
		pop   int64 // highest popularity in the layer
		bytes int64
		paths []string // sorted, since paths are
	}
	byRep := make(map[int]*layer, groups)
	var out []*layer
	for i := range paths {
		r := uf.find(i)
		l := byRep[r]
		if l == nil {
			l = &layer{rep: r, pop: p[i], bytes: bytes[r]}
			byRep[r] = l
			out = append(out, l)
		}
		if p[i] > l.pop {
			l.pop = p[i]
		}
		l.paths = append(l.paths, paths[i].Path)
	}

	// Top-level groups that still exceed the budget: keep the most popular
	// (then largest) budget-1 and merge the rest into one.
	if len(out) > budget {
		rankGroups(out, func(l *layer) (int64, int64, string) { return p[head[l.rep]], l.bytes, paths[head[l.rep]].Path })
		rest := &layer{pop: -1}
		for _, l := range out[budget-1:] {
			rest.paths = append(rest.paths, l.paths...)
			rest.bytes += l.bytes
			if l.pop > rest.pop {
				rest.pop = l.pop
			}
		}
		sort.Strings(rest.paths)
		out = append(out[:budget-1], rest)
	}

	rankGroups(out, func(l *layer) (int64, int64, string) { return l.pop, l.bytes, l.paths[0] })
	res := make([][]string, len(out))
	for i, l := range out {
		res[i] = l.paths
	}
	return res
}

// rankGroups sorts s by key: the first component descending, then the second
// descending, then the third ascending.
func rankGroups[T any](s []T, key func(T) (int64, int64, string)) {
	sort.SliceStable(s, func(i, j int) bool {
		a1, a2, a3 := key(s[i])
		b1, b2, b3 := key(s[j])
		if a1 != b1 {
			return a1 > b1
		}
		if a2 != b2 {
			return a2 > b2
		}
		return a3 < b3
	})
}

// unionFind is a disjoint-set forest with path halving and union by size.
type unionFind struct{ up, size []int }

func newUnionFind(n int) *unionFind {
	u := &unionFind{up: make([]int, n), size: make([]int, n)}
	for i := range u.up {
		u.up[i], u.size[i] = i, 1
	}
	return u
}

func (u *unionFind) find(i int) int {
	for u.up[i] != i {
		u.up[i] = u.up[u.up[i]]
		i = u.up[i]
	}
	return i
}

// union joins the sets of a and b and returns the new representative.
func (u *unionFind) union(a, b int) int {
	a, b = u.find(a), u.find(b)
	if a == b {
		return a
	}
	if u.size[a] < u.size[b] {
		a, b = b, a
	}
	u.up[b] = a
	u.size[a] += u.size[b]
	return a
}

// mergeItem is a candidate merge of the group headed by head into the group
// of head's parent, queued with the group's size when it was computed.
type mergeItem struct {
	cost  float64
	head  int
	bytes int64
}

// mergeHeap orders candidate merges by cost, then head index (that is, store
// path), so equal costs resolve the same way everywhere.
type mergeHeap struct{ items []mergeItem }

func (h *mergeHeap) Len() int { return len(h.items) }
func (h *mergeHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	return a.head < b.head
}
func (h *mergeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)    { h.items = append(h.items, x.(mergeItem)) }
func (h *mergeHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
