package layers

import (
	"math"
	"sort"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/minheap"
)

// DefaultBudget is the default number of store-path layers per image. Docker
// refuses images with more than 125 layers (overlayfs' stacking limit, less
// a margin); 100 leaves room for the customisation layer that holds the
// image's symlink forest and for a few more layers stacked on top by users
// who build FROM the image.
const DefaultBudget = 100

// Group partitions the store paths of g into at most budget layers, aiming
// for cross-image reuse of layers and a short pull as explained under
// "Grouping", "Pull time" and "Order" in the package documentation (it
// assumes 100 MB/s, 50 ms a layer and a horizon of 200 kinds of image:
// [GroupOptions] changes that).
// pop is the package set's popularity ([closure.Compute] on the whole set);
// a nil map is allowed. A budget below 1 means [DefaultBudget].
//
// Every path of g is in exactly one layer. Each layer is sorted, layers are
// ordered for the Docker engine's reuse of layer chains (widely shared,
// large layers first), and the result depends only on g, pop and budget,
// never on the order in which Nix listed the paths.
func Group(g *closure.Graph, pop closure.Popularity, budget int) [][]string {
	return GroupOptions{}.Group(g, pop, budget)
}

// GroupOptions are the constants of [Group], for the benchmarks'
// sensitivity tables; the zero value is [Group]'s.
type GroupOptions struct {
	// MergeRisk is the inverse of the share of the receiving group's bytes
	// counted as duplicated by a merge (see Grouping); 0 means 40.
	MergeRisk float64
	// Bandwidth is the pull-time model's bandwidth in bytes per second;
	// 0 (or less) means [DefaultBandwidth].
	Bandwidth float64
	// PerLayer is the pull-time model's fixed cost of downloading one
	// layer; 0 means [DefaultPerLayer], and a negative value means none,
	// so that Group merges only when the budget forces it.
	PerLayer time.Duration
	// Horizon is the pull-time model's bound on the kinds of image holding
	// a path that one client pulls (see Pull time); 0 means
	// [DefaultHorizon], and a negative value means no bound, so that every
	// kind counts.
	Horizon float64
	// Order is the exponent of the popularity odds in the key that orders
	// the layers (see Order); 0 means [DefaultOrder], and a negative value
	// means none, so that layers go by size alone. It changes only the
	// order, never which paths share a layer.
	Order float64
}

// The pull-time model's defaults (see Pull time in the package
// documentation): 100 MB/s and 50 ms a layer, the per-layer cost measured
// with Debian's Docker 20.10 (a 41-layer image pulled in 3.1-3.4 s, the same
// bytes in one layer in 0.9-1.2 s).
const (
	DefaultBandwidth = 100e6
	DefaultPerLayer  = 50 * time.Millisecond
)

// DefaultHorizon is the default [GroupOptions.Horizon]: a client is assumed
// to pull images of at most 200 of the kinds that hold a given path (see
// Pull time in the package documentation).
const DefaultHorizon = 200

// DefaultOrder is the default [GroupOptions.Order]: the layers are ordered
// by bytes*odds^(1/4) (see Order in the package documentation).
const DefaultOrder = 0.25

// orderKey returns the key that orders a layer of the given bytes whose
// highest popularity is pop, in an image whose highest is top: bytes times
// the odds (pop+1)/(top-pop+1) to the power of the Order exponent.
func (o GroupOptions) orderKey(bytes, pop, top int64) float64 {
	odds := float64(pop+1) / float64(top-pop+1)
	switch e := o.Order; {
	case e == 0 || e == DefaultOrder:
		return float64(bytes) * math.Sqrt(math.Sqrt(odds)) // exactly as before Order existed
	case e < 0:
		return float64(bytes)
	default:
		return float64(bytes) * math.Pow(odds, e)
	}
}

// layerBytes returns the bytes whose download takes as long as the fixed
// cost of a layer, or 0 without a per-layer cost.
func (o GroupOptions) layerBytes() float64 {
	bw, pl := o.Bandwidth, o.PerLayer
	if bw <= 0 {
		bw = DefaultBandwidth
	}
	if pl == 0 {
		pl = DefaultPerLayer
	}
	if pl < 0 {
		return 0
	}
	return bw * pl.Seconds()
}

// again returns the number of times a client is expected to download a
// path again that a merge puts in a layer with a referrer it is not always
// pulled with: kinds of image hold the path without the referrer, out of
// kinds that hold the path, and a client pulls at most the horizon's kinds
// of those (all of them without a horizon).
func (o GroupOptions) again(without, kinds int64) float64 {
	h := o.Horizon
	if h == 0 {
		h = DefaultHorizon
	}
	n := float64(max(without, 1))
	if h > 0 && float64(kinds) > h {
		n *= h / float64(kinds)
	}
	return n
}

// Group is [Group] with the options' constants.
func (o GroupOptions) Group(g *closure.Graph, pop closure.Popularity, budget int) [][]string {
	mergeRisk := o.MergeRisk
	if mergeRisk <= 0 {
		mergeRisk = defaultMergeRisk
	}
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

	// Steps 2 and 3: merges, cheapest expected duplication first. Every
	// path starts as a group of its own.
	rest := [2]int{-1, -1} // representatives of the top-level and shared rest groups
	isRest := func(r int) bool { return r == rest[restTop] || r == rest[restShared] }
	layerBytes := o.layerBytes()
	if groups > budget || layerBytes > 0 {
		// cost returns the expected duplication of the cheapest merge of
		// group r (step 3's cost) and whether it goes to a rest group.
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
		// run merges groups in the order of score, lowest first, until
		// done says to stop; scores only grow as groups grow.
		run := func(score func(r int) (float64, bool), done func(s float64) bool) {
			var candidates []mergeItem
			for r := 0; r < n; r++ {
				if uf.find(r) == r && !isRest(r) {
					c, _ := score(r)
					candidates = append(candidates, mergeItem{cost: c, head: head[r]})
				}
			}
			h := minheap.New(mergeItem.less, candidates...)
			for h.Len() > 0 {
				it := h.Pop()
				if done(it.cost) {
					break
				}
				r := uf.find(it.head)
				if head[r] != it.head || isRest(r) {
					continue // merged away, or a rest group itself
				}
				c, toRest := score(r)
				if c > it.cost { // costs only grow: requeue
					h.Push(mergeItem{cost: c, head: it.head})
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
		}
		// Step 2: tiny merges, whatever the budget (see Pull time). No rest
		// exists yet. A group of B bytes or more costs at least B unless
		// the horizon makes its second downloads rare.
		if layerBytes > 0 {
			run(func(r int) (float64, bool) {
				hd := head[r]
				q := parent[hd]
				if q < 0 {
					return math.Inf(1), true // only groups that have a parent
				}
				return float64(bytes[r])*o.again(p[hd]-p[q], p[hd]+1) + float64(bytes[uf.find(q)])/mergeRisk, false
			}, func(c float64) bool { return c >= layerBytes })
		}
		// Step 3: the budget's merges.
		run(cost, func(float64) bool { return groups <= budget })
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
		l.key = o.orderKey(l.bytes, l.pop, top)
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

// defaultMergeRisk is the inverse of the share of a group's bytes counted
// as duplicated when another group merges into it (see Grouping).
const defaultMergeRisk = 40

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

// less orders candidate merges by cost, then head index (that is, store
// path), so equal costs resolve the same way everywhere.
func (a mergeItem) less(b mergeItem) bool {
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	return a.head < b.head
}
