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
// image and was not asked for directly, Q is there too. Images that ask for P
// itself are the exception, and they are common for the packages users name:
// a path is never put into its referrer's layer for free.
//
// How often does an image hold P without Q? Images get P because they ask
// for P itself or for one of its pop(P) ancestors; counting each such request
// once, pop(P)+1 kinds of image hold P, and of those, the pop(Q)+1 that ask
// for Q or an ancestor of Q also hold Q when Q references P. The share of
// images holding P but not Q is then (pop(P)-pop(Q))/(pop(P)+1): never zero,
// since any image may ask for P alone, and larger for P's own requests the
// less popular P is.
//
// Group works in two steps:
//
//  1. Parents. Each path's parent is the path referencing it (in the image)
//     with the highest popularity, ties to the lower store path: the
//     referrer most likely to come along with it.
//  2. Merges. Every path starts as a group of its own. While there are more
//     groups than the budget, the group whose merge is expected to duplicate
//     the fewest bytes is merged. A group G headed by H (the member whose
//     parent is outside G) can go two ways: into the group of H's parent Q,
//     at an expected cost of bytes(G)*(pop(H)-pop(Q))/(pop(H)+1) +
//     bytes(group of Q)/40 (the share of images holding H that lack Q,
//     times G's bytes, which then travel in a second layer; plus a fortieth
//     of the receiving group's bytes, for the risk that another image
//     decides differently and the receiving layer, changed, must be
//     downloaded again), or into a rest layer, at bytes(G) (a rest is
//     specific to the image, so its bytes are counted as downloaded again).
//     There are two rest layers: one for groups headed by the image's
//     top-level paths (no parent: the packages asked for, which differ
//     from image to image) and one for all others (shared dependencies,
//     which images have in common far more often), so that the paths an
//     image asks for do not change the layer of the dependencies it shares
//     with the previous one. Groups whose parent is in a rest can only go
//     to a rest. The first group sent to a rest starts it; if only the two
//     rests are left and the budget is 1, they are merged. Equal costs go
//     to the lower head store path. Paths missing from the popularity map
//     count 0.
//
// No path joins another when the image fits the budget, so an image that
// asks for a path alone gets the same layer for it as an image that holds it
// through its referrer. Only merges forced by the budget make layers differ
// between images, and the costs send small, rarely shared paths first: large
// popular paths (glibc) keep layers of their own longest; small paths join
// their main referrer or, when that referrer is large, a rest layer, so large
// layers are rarely changed by small decisions.
//
// # Order
//
// The order of layers does not change which layers a client must fetch, but
// the Docker engine with its classic image store keeps layers by chain (a
// layer together with every layer below it), so it reuses only the longest
// prefix of an image's layers that an image it pulled before starts with. If
// layer i is present in another image with probability p(i), independently,
// the expected bytes of the common prefix, the sum over k of bytes(k) times
// the product of p(j) for j <= k, is largest when layers are sorted by
// bytes(i)*p(i)/(1-p(i)), descending (swapping two neighbours shows it).
// Group estimates p(i) from pop/top, where pop is the highest popularity in
// the layer and top the highest in the image, and takes the fourth root of
// the odds: the key is bytes*((pop+1)/(top-pop+1))^(1/4). The estimate is
// crude (images are not independent draws, and a layer's presence in the
// previous image is what counts), and the damped key orders by size first
// and popularity second; on the benchmark corpus it gives the Docker engine
// 3-35% fewer bytes than the plain odds (benchmarks/README.md). Large
// layers that every image holds (glibc) come first, small image-specific
// ones later, the rest layers last. Equal keys go to the lower first store
// path. Each layer's paths are sorted. Sizes are NAR sizes.
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
// zlib -> openssl (pop 150 beats libcurl's 12), glibc -> zlib. With the
// default budget every path is a layer of its own, in the order glibc
// (30M*(901/1)^(1/4) = 164M), openssl (6M*(151/751)^(1/4) = 4.0M), libcurl
// (1M*(13/889)^(1/4) = 0.35M), curl (0.5M*(3/899)^(1/4) = 0.12M), zlib
// (0.1M*(301/601)^(1/4) = 0.084M) and nghttp2 (0.2M*(14/888)^(1/4) =
// 0.071M).
//
// With a budget of 5, the cheapest move is nghttp2 into libcurl:
// 0.2M*(13-12)/14 + 1M/40 = 0.04M (curl to the top-level rest would cost
// 0.5M, zlib to the shared rest 0.1M, libcurl into curl
// 1M*10/13 + 0.5M/40 = 0.78M, openssl into libcurl 6M*138/151 + 1M/40 =
// 5.51M, glibc into zlib 30M*600/901 + 0.1M/40 = 19.98M). The layers are
// {glibc}, {openssl}, {libcurl, nghttp2} (its key uses nghttp2's pop 13:
// 0.43M), {curl}, {zlib}. With 4, zlib starts the shared rest (0.1M; into
// openssl it would cost 0.1M*150/301 + 6M/40 = 0.2M) and curl the top-level
// rest (0.5M), which frees no layer; then {libcurl, nghttp2} joins the
// shared rest (1.2M: its parent curl is in a rest now): {glibc}, {openssl},
// rest {libcurl, nghttp2, zlib}, rest {curl}. With 3, openssl follows (6M):
// {glibc}, rest {libcurl, nghttp2, openssl, zlib}, rest {curl}. With 2,
// only glibc is left to move and joins the shared rest; with 1, the two
// rests merge. Budgets that small leave no choice worth making.

import (
	"math"
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
// for cross-image reuse of layers as explained under "Grouping" and "Order"
// at the top of group.go.
// pop is the package set's popularity ([closure.Compute] on the whole set);
// a nil map is allowed. A budget below 1 means [DefaultBudget].
//
// Every path of g is in exactly one layer. Each layer is sorted, layers are
// ordered for the Docker engine's reuse of layer chains (widely shared,
// large layers first), and the result depends only on g, pop and budget,
// never on the order in which Nix listed the paths.
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

	// Groups are union-find sets; head and bytes are kept at the
	// representative. The rest group, once it exists, is rest.
	uf := newUnionFind(n)
	head := make([]int, n)
	bytes := make([]int64, n)
	for i := range head {
		head[i] = i
		bytes[i] = paths[i].NarSize
	}
	groups := n
	join := func(into, r int) { // merge group r into group into
		hi, bi := head[into], bytes[into]
		nr := uf.union(into, r)
		head[nr], bytes[nr] = hi, bi+bytes[r]
		groups--
	}

	// Step 2: merges, cheapest expected duplication first. Every path starts
	// as a group of its own.
	rest := [2]int{-1, -1} // representatives of the top-level and shared rest groups
	isRest := func(r int) bool { return r == rest[restTop] || r == rest[restShared] }
	if groups > budget {
		// cost returns the expected duplication of the cheapest merge of
		// group r and whether it goes to a rest group.
		cost := func(r int) (float64, bool) {
			toRest := float64(bytes[r])
			hd := head[r]
			q := parent[hd]
			if q < 0 {
				return toRest, true
			}
			into := uf.find(q)
			if isRest(into) {
				return toRest, true
			}
			c := float64(bytes[r])*float64(p[hd]-p[q])/float64(p[hd]+1) + float64(bytes[into])/mergeRisk
			if c < toRest {
				return c, false
			}
			return toRest, true
		}
		h := &mergeHeap{}
		for r := 0; r < n; r++ {
			if uf.find(r) == r {
				c, _ := cost(r)
				h.items = append(h.items, mergeItem{cost: c, head: head[r]})
			}
		}
		h.init()
		for groups > budget && h.Len() > 0 {
			it := h.pop()
			r := uf.find(it.head)
			if head[r] != it.head || isRest(r) {
				continue // merged away, or a rest group itself
			}
			c, toRest := cost(r)
			if c > it.cost { // costs only grow: requeue
				h.push(mergeItem{cost: c, head: it.head})
				continue
			}
			k := restShared
			if parent[it.head] < 0 {
				k = restTop
			}
			switch {
			case !toRest:
				join(uf.find(parent[it.head]), r)
			case rest[k] < 0:
				rest[k] = r // the first group sent to a rest starts it
			default:
				join(rest[k], r)
				rest[k] = uf.find(rest[k])
			}
		}
		if groups > budget { // only the two rests are left, and the budget is 1
			join(rest[restShared], rest[restTop])
			r := uf.find(rest[restShared])
			rest = [2]int{r, r}
		}
	}

	// Collect the groups.
	type layer struct {
		rest  bool
		pop   int64 // highest popularity in the layer
		bytes int64
		paths []string // sorted, since paths are
		key   float64  // ordering key, see Grouping
	}
	byRep := make(map[int]*layer, groups)
	var out []*layer
	for i := range paths {
		r := uf.find(i)
		l := byRep[r]
		if l == nil {
			l = &layer{rest: isRest(r), pop: p[i], bytes: bytes[r]}
			byRep[r] = l
			out = append(out, l)
		}
		l.pop = max(l.pop, p[i])
		l.paths = append(l.paths, paths[i].Path)
	}
	// Order: the expected bytes a Docker engine reuses, rest last.
	var top int64 // the image's highest popularity
	for _, l := range out {
		top = max(top, l.pop)
	}
	for _, l := range out {
		l.key = float64(l.bytes) * math.Sqrt(math.Sqrt(float64(l.pop+1)/float64(top-l.pop+1)))
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.rest != b.rest {
			return b.rest
		}
		if a.key != b.key {
			return a.key > b.key
		}
		return a.paths[0] < b.paths[0]
	})
	res := make([][]string, len(out))
	for i, l := range out {
		res[i] = l.paths
	}
	return res
}

// mergeRisk is the inverse of the share of a group's bytes counted as
// duplicated when another group merges into it (see Grouping).
const mergeRisk = 40

// The two rest groups: one for the image's top-level paths, one for paths
// that other paths of the image reference.
const (
	restTop = iota
	restShared
)

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
	cost float64
	head int
}

// mergeHeap is a binary min-heap of candidate merges ordered by cost, then
// head index (that is, store path), so equal costs resolve the same way
// everywhere. It is typed rather than a container/heap, which would box
// every item.
type mergeHeap struct{ items []mergeItem }

func (h *mergeHeap) Len() int { return len(h.items) }

func (h *mergeHeap) less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	return a.head < b.head
}

// init establishes the heap order over items.
func (h *mergeHeap) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *mergeHeap) push(it mergeItem) {
	h.items = append(h.items, it)
	for i := len(h.items) - 1; i > 0; {
		up := (i - 1) / 2
		if !h.less(i, up) {
			break
		}
		h.items[i], h.items[up] = h.items[up], h.items[i]
		i = up
	}
}

func (h *mergeHeap) pop() mergeItem {
	it := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	h.down(0)
	return it
}

func (h *mergeHeap) down(i int) {
	for n := len(h.items); ; {
		m := i
		if l := 2*i + 1; l < n && h.less(l, m) {
			m = l
		}
		if r := 2*i + 2; r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
