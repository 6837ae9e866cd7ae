package layers

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/closure"

	"github.com/nixery-go/nixery/internal/testutil"
)

// exampleGraph is the worked example of the package documentation.
func exampleGraph(t testing.TB) (*closure.Graph, closure.Popularity) {
	t.Helper()
	const M = 1 << 20
	s := testutil.StorePath
	g, err := closure.New([]closure.Path{
		{Path: s("curl"), NarSize: M / 2, References: []string{s("libcurl"), s("glibc")}},
		{Path: s("libcurl"), NarSize: M, References: []string{s("openssl"), s("zlib"), s("nghttp2"), s("glibc")}},
		{Path: s("nghttp2"), NarSize: M / 5, References: []string{s("glibc")}},
		{Path: s("openssl"), NarSize: 6 * M, References: []string{s("zlib"), s("glibc")}},
		{Path: s("zlib"), NarSize: M / 10, References: []string{s("glibc")}},
		{Path: s("glibc"), NarSize: 30 * M, References: []string{s("glibc")}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pop := closure.Popularity{"curl": 2, "libcurl": 12, "nghttp2": 13, "openssl": 150, "zlib": 300, "glibc": 900}
	return g, pop
}

func names(layers [][]string) [][]string {
	out := make([][]string, len(layers))
	for i, l := range layers {
		for _, p := range l {
			out[i] = append(out[i], closure.Name(p))
		}
		sort.Strings(out[i])
	}
	return out
}

// budgetOnly is Group without the pull-time model's per-layer cost: it
// merges only when the budget forces it (no step 2 of Grouping).
var budgetOnly = GroupOptions{PerLayer: -1}

// TestGroupExample is the worked example of the budget's merges (steps 1
// and 3), without a per-layer cost.
func TestGroupExample(t *testing.T) {
	g, pop := exampleGraph(t)
	for _, tc := range []struct {
		budget int
		want   [][]string
	}{
		{DefaultBudget, [][]string{{"glibc"}, {"openssl"}, {"libcurl"}, {"curl"}, {"zlib"}, {"nghttp2"}}},
		{6, [][]string{{"glibc"}, {"openssl"}, {"libcurl"}, {"curl"}, {"zlib"}, {"nghttp2"}}},
		{5, [][]string{{"glibc"}, {"openssl"}, {"libcurl", "nghttp2"}, {"curl"}, {"zlib"}}},
		{4, [][]string{{"glibc"}, {"openssl"}, {"libcurl", "nghttp2", "zlib"}, {"curl"}}},
		{3, [][]string{{"glibc"}, {"libcurl", "nghttp2", "openssl", "zlib"}, {"curl"}}},
		{2, [][]string{{"glibc", "libcurl", "nghttp2", "openssl", "zlib"}, {"curl"}}},
		{1, [][]string{{"curl", "glibc", "libcurl", "nghttp2", "openssl", "zlib"}}},
	} {
		if got := names(budgetOnly.Group(g, pop, tc.budget)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("budget %d: Group = %v, want %v", tc.budget, got, tc.want)
		}
	}
}

func TestGroupEmptyAndNilPopularity(t *testing.T) {
	if got := Group(&closure.Graph{}, nil, 10); got != nil {
		t.Errorf("Group(empty) = %v, want nil", got)
	}
	g, _ := exampleGraph(t)
	// Without popularity every path counts 0: within the budget each is a
	// layer of its own, largest first; with a budget of 1 all share one.
	if got, want := names(budgetOnly.Group(g, nil, 0)), [][]string{{"glibc"}, {"openssl"}, {"libcurl"}, {"curl"}, {"nghttp2"}, {"zlib"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Group(nil popularity) = %v, want %v", got, want)
	}
	if got, want := names(Group(g, nil, 1)), [][]string{{"curl", "glibc", "libcurl", "nghttp2", "openssl", "zlib"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Group(nil popularity, 1) = %v, want %v", got, want)
	}
}

// randomPaths returns a random DAG of n paths: path i references a few of the
// paths before it, more often the low-numbered ("popular") ones.
func randomPaths(r *rand.Rand, n int) []closure.Path {
	paths := make([]closure.Path, n)
	for i := range paths {
		paths[i].Path = testutil.StorePath(fmt.Sprintf("p%d-1.0", i))
		paths[i].NarSize = int64(r.ExpFloat64() * 1e6)
		if r.IntN(10) == 0 {
			paths[i].NarSize = 0
		}
		if i == 0 {
			continue
		}
		k := r.IntN(4)
		for j := 0; j < k; j++ {
			var d int
			if r.IntN(2) == 0 {
				d = r.IntN(min(i, 5))
			} else {
				d = r.IntN(i)
			}
			paths[i].References = append(paths[i].References, paths[d].Path)
		}
		if r.IntN(5) == 0 {
			paths[i].References = append(paths[i].References, paths[i].Path)
		}
	}
	return paths
}

// checkPartition fails t unless layers partition g's paths into at most
// budget sorted, non-empty layers.
func checkPartition(t *testing.T, g *closure.Graph, layers [][]string, budget int) {
	t.Helper()
	if len(layers) > budget {
		t.Fatalf("%d layers, budget %d", len(layers), budget)
	}
	seen := map[string]bool{}
	for _, l := range layers {
		if len(l) == 0 {
			t.Fatal("empty layer")
		}
		if !slices.IsSorted(l) {
			t.Fatalf("layer not sorted: %v", l)
		}
		for _, p := range l {
			if seen[p] {
				t.Fatalf("%s in two layers", p)
			}
			if _, ok := g.Lookup(p); !ok {
				t.Fatalf("%s not in graph", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != g.Len() {
		t.Fatalf("layers hold %d paths, graph %d", len(seen), g.Len())
	}
}

// groupInvariants checks partition, budget, determinism and independence of
// the input order for one random graph, with Group's defaults and with
// other per-layer costs.
func groupInvariants(t *testing.T, seed uint64, n, budget int) {
	for _, o := range []GroupOptions{{}, budgetOnly, {PerLayer: time.Second}, {Bandwidth: 1e3}} {
		groupInvariantsWith(t, o, seed, n, budget)
	}
}

func groupInvariantsWith(t *testing.T, o GroupOptions, seed uint64, n, budget int) {
	r := rand.New(rand.NewPCG(seed, 1))
	all := randomPaths(r, n)
	global, err := closure.New(all, nil)
	if err != nil {
		t.Fatal(err)
	}
	pop := closure.Compute(global)
	// An image: the closure of a few random roots.
	var roots []string
	for k := 1 + r.IntN(4); k > 0; k-- {
		roots = append(roots, all[r.IntN(n)].Path)
	}
	slices.Sort(roots)
	roots = slices.Compact(roots) // closure.Graph.Subgraph repeats repeated roots' paths
	img, err := global.Subgraph(roots...)
	if err != nil {
		t.Fatal(err)
	}
	got := o.Group(img, pop, budget)
	b := budget
	if b < 1 {
		b = DefaultBudget
	}
	checkPartition(t, img, got, b)
	if again := o.Group(img, pop, budget); !reflect.DeepEqual(got, again) {
		t.Fatalf("not deterministic:\n%v\n%v", got, again)
	}
	// The same image with paths and references listed in another order.
	shuffled := slices.Clone(img.Paths())
	for i := range shuffled {
		refs := slices.Clone(shuffled[i].References)
		r.Shuffle(len(refs), func(a, b int) { refs[a], refs[b] = refs[b], refs[a] })
		shuffled[i].References = refs
	}
	r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
	r.Shuffle(len(roots), func(a, b int) { roots[a], roots[b] = roots[b], roots[a] })
	img2, err := closure.New(shuffled, roots)
	if err != nil {
		t.Fatal(err)
	}
	if again := o.Group(img2, pop, budget); !reflect.DeepEqual(got, again) {
		t.Fatalf("depends on input order:\n%v\n%v", got, again)
	}
}

func TestGroupInvariants(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		n := 1 + int(seed%60)
		for _, budget := range []int{-1, 0, 1, 2, 3, 5, 10, 40} {
			t.Run(fmt.Sprintf("seed%d/n%d/budget%d", seed, n, budget), func(t *testing.T) {
				groupInvariants(t, seed, n, budget)
			})
		}
	}
}

func FuzzGroup(f *testing.F) {
	f.Add(uint64(1), uint8(20), int8(3))
	f.Add(uint64(7), uint8(1), int8(1))
	f.Add(uint64(9), uint8(200), int8(0))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, budget int8) {
		groupInvariants(t, seed, 1+int(n), int(budget))
	})
}

// TestGroupSharesSubClosures checks the property grouping is for: with a
// budget that does not force merges and no per-layer cost, two images that
// both hold the closure S of a top-level package X lay S out in exactly the
// same layers, whatever else they hold. (With the per-layer cost, a tiny
// path of S may join a referrer outside S: see Pull time.)
func TestGroupSharesSubClosures(t *testing.T) {
	for seed := uint64(0); seed < 100; seed++ {
		r := rand.New(rand.NewPCG(seed, 2))
		n := 20 + r.IntN(80)
		all := randomPaths(r, n)
		global, err := closure.New(all, nil)
		if err != nil {
			t.Fatal(err)
		}
		pop := closure.Compute(global)
		tops := global.Roots() // referenced by nothing: top-level packages
		x := tops[r.IntN(len(tops))]
		s := global.Closure(x)
		var layouts [][][]string
		for k := 0; k < 3; k++ {
			a, b := all[r.IntN(n)].Path, all[r.IntN(n)].Path
			roots := slices.Compact(slices.Sorted(slices.Values([]string{x, a, b})))
			img, err := global.Subgraph(roots...)
			if err != nil {
				t.Fatal(err)
			}
			var within [][]string
			covered := 0
			for _, l := range budgetOnly.Group(img, pop, img.Len()) {
				if isSubset(l, s) {
					within = append(within, l)
					covered += len(l)
				}
			}
			if covered != len(s) {
				t.Fatalf("seed %d: layers inside the closure of %s cover %d of its %d paths", seed, x, covered, len(s))
			}
			sort.Slice(within, func(i, j int) bool { return within[i][0] < within[j][0] })
			layouts = append(layouts, within)
		}
		for k := 1; k < len(layouts); k++ {
			if !reflect.DeepEqual(layouts[0], layouts[k]) {
				t.Fatalf("seed %d: closure of %s laid out differently:\n%v\n%v", seed, x, layouts[0], layouts[k])
			}
		}
	}
}

func isSubset(l, sorted []string) bool {
	for _, p := range l {
		if _, ok := slices.BinarySearch(sorted, p); !ok {
			return false
		}
	}
	return true
}

// TestGroupBudgetKeepsPopularApart checks that under budget pressure the large,
// popular path keeps a layer of its own and lands first.
func TestGroupBudgetKeepsPopularApart(t *testing.T) {
	g, pop := exampleGraph(t)
	for budget := 3; budget <= 5; budget++ {
		got := Group(g, pop, budget)
		if len(got[0]) != 1 || !strings.HasSuffix(got[0][0], "-glibc") {
			t.Errorf("budget %d: first layer %v, want glibc alone", budget, names(got[:1]))
		}
	}
}

// TestGroupRequestedPathAlone checks that a path gets the same layer whether
// an image asks for it alone or holds it through its only referrer: within
// the budget no path joins another for free, even when pop(P) = pop(Q)+1.
func TestGroupRequestedPathAlone(t *testing.T) {
	const M = 1 << 20
	s := testutil.StorePath
	global, err := closure.New([]closure.Path{
		{Path: s("app"), NarSize: M / 2, References: []string{s("libbig"), s("glibc")}},
		{Path: s("libbig"), NarSize: 100 * M, References: []string{s("glibc")}},
		{Path: s("glibc"), NarSize: 30 * M},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pop := closure.Compute(global) // app 0, libbig 1, glibc 2
	layerOf := func(root string) []string {
		img, err := global.Subgraph(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range Group(img, pop, 10) {
			if slices.Contains(l, s("libbig")) {
				return l
			}
		}
		t.Fatalf("no layer holds libbig in the image of %s", root)
		return nil
	}
	if a, b := layerOf(s("app")), layerOf(s("libbig")); !reflect.DeepEqual(a, b) {
		t.Errorf("libbig's layer: %v through app, %v asked for alone", names([][]string{a}), names([][]string{b}))
	}
}

// TestGroupSharedRestIgnoresRequests checks the two rest layers: two images
// that share a shell and differ in one small package asked for, under a
// budget that forces merges, lay the shell's closure out identically; only
// the layer holding the package differs. It is about the budget's merges
// (step 3): with the per-layer cost, a library here (50-100 KiB, used by 22
// packages) whose parent is the package asked for would join it, since 22
// more downloads of it cost less than one layer.
func TestGroupSharedRestIgnoresRequests(t *testing.T) {
	const K = 1 << 10
	s := testutil.StorePath
	libs := []string{s("l1"), s("l2"), s("l3"), s("l4"), s("l5"), s("l6")}
	ps := []closure.Path{
		{Path: s("glibc"), NarSize: 30000 * K},
		{Path: s("bash"), NarSize: 3000 * K, References: append(slices.Clone(libs), s("glibc"))},
		{Path: s("x"), NarSize: 20 * K, References: []string{s("l1"), s("glibc")}},
		{Path: s("y"), NarSize: 30 * K, References: []string{s("l2"), s("glibc")}},
	}
	for i, l := range libs {
		ps = append(ps, closure.Path{Path: l, NarSize: int64(50+10*i) * K, References: []string{s("glibc")}})
	}
	// Other packages of the set use the libraries: they are popular.
	for i := 0; i < 20; i++ {
		ps = append(ps, closure.Path{Path: s(fmt.Sprintf("user%d", i)), NarSize: K, References: libs})
	}
	global, err := closure.New(ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	pop := closure.Compute(global)
	const budget = 5 // 9 paths per image
	layout := func(pkg string) (shared [][]string, own []string) {
		img, err := global.Subgraph(s("bash"), s(pkg))
		if err != nil {
			t.Fatal(err)
		}
		ls := budgetOnly.Group(img, pop, budget)
		checkPartition(t, img, ls, budget)
		for _, l := range ls {
			if slices.Contains(l, s(pkg)) {
				own = l
			} else {
				shared = append(shared, l)
			}
		}
		return shared, own
	}
	sx, ox := layout("x")
	sy, oy := layout("y")
	if !reflect.DeepEqual(sx, sy) {
		t.Errorf("the shell's layers differ:\nwith x: %v\nwith y: %v", names(sx), names(sy))
	}
	if len(ox) != 1 || len(oy) != 1 {
		t.Errorf("the package asked for shares its layer: %v, %v", names([][]string{ox}), names([][]string{oy}))
	}
}

// TestGroupMergesTinyLayers is the worked example of step 2: with the
// default model (100 MB/s, 50 ms a layer: 5 MB) and a budget that forces
// nothing, nghttp2, used only through libcurl, joins it; libcurl, which
// ten kinds of image hold without curl, stays apart, and so does zlib,
// which 150 hold without openssl. At 1 s a layer (100 MB) libcurl joins
// curl and zlib openssl, and the popular glibc and openssl, tiny now,
// still stay apart.
func TestGroupMergesTinyLayers(t *testing.T) {
	g, pop := exampleGraph(t)
	want := [][]string{{"glibc"}, {"openssl"}, {"libcurl", "nghttp2"}, {"curl"}, {"zlib"}}
	for _, budget := range []int{DefaultBudget, 6, 5} {
		if got := names(Group(g, pop, budget)); !reflect.DeepEqual(got, want) {
			t.Errorf("budget %d: Group = %v, want %v", budget, got, want)
		}
	}
	slow := GroupOptions{PerLayer: time.Second}
	if got, want := names(slow.Group(g, pop, DefaultBudget)), [][]string{{"glibc"}, {"openssl", "zlib"}, {"curl", "libcurl", "nghttp2"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("1s a layer: Group = %v, want %v", got, want)
	}
	if got := slow.Group(g, pop, 4); len(got) > 4 {
		t.Errorf("1s a layer, budget 4: %d layers", len(got))
	}
}

// TestGroupKeepsLargePathsApart checks that merges the budget does not force
// never put two paths of at least the model's layer bytes (bandwidth x
// per-layer cost) into one layer: in these package sets of at most 100
// paths, below the horizon, only tiny groups move.
func TestGroupKeepsLargePathsApart(t *testing.T) {
	for seed := uint64(0); seed < 100; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		all := randomPaths(r, 20+r.IntN(80))
		g, err := closure.New(all, nil)
		if err != nil {
			t.Fatal(err)
		}
		pop := closure.Compute(g)
		for _, o := range []GroupOptions{{}, {PerLayer: 20 * time.Millisecond}, {Bandwidth: 20e6}} {
			lb := o.layerBytes()
			ls := o.Group(g, pop, g.Len())
			checkPartition(t, g, ls, g.Len())
			merged := 0
			for _, l := range ls {
				large := 0
				for _, p := range l {
					if q, _ := g.Lookup(p); float64(q.NarSize) >= lb {
						large++
					}
				}
				if large > 1 {
					t.Fatalf("seed %d, %+v: layer %v holds %d paths of %.0f bytes or more", seed, o, names([][]string{l}), large, lb)
				}
				merged += len(l) - 1
			}
			if seed == 0 && merged == 0 {
				t.Errorf("%+v: nothing merged in a package set of %d paths", o, g.Len())
			}
		}
	}
}

// TestGroupHorizon: a large library that 5,000 packages use, all but one
// of them through one referrer, joins that referrer whatever the budget
// (a client pulls at most 200 of those kinds of image, so it downloads
// the library again 200/5,002 times); one that 25,000 of 30,000 packages
// hold without the referrer stays apart. Without the horizon, or with one
// above the library's kinds, every group of 5 MB or more stays apart.
func TestGroupHorizon(t *testing.T) {
	const M = 1 << 20
	s := testutil.StorePath
	g, err := closure.New([]closure.Path{
		{Path: s("mesa"), NarSize: 10 * M, References: []string{s("llvm"), s("zstd")}},
		{Path: s("llvm"), NarSize: 20 * M, References: []string{s("zstd")}},
		{Path: s("zstd"), NarSize: 8 * M},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pop := closure.Popularity{"mesa": 5000, "llvm": 5001, "zstd": 30000}
	apart := [][]string{{"llvm"}, {"mesa"}, {"zstd"}}
	for _, c := range []struct {
		o    GroupOptions
		want [][]string
	}{
		{GroupOptions{}, [][]string{{"llvm", "mesa"}, {"zstd"}}},
		{GroupOptions{Horizon: DefaultHorizon}, [][]string{{"llvm", "mesa"}, {"zstd"}}},
		{GroupOptions{Horizon: -1}, apart},
		{GroupOptions{Horizon: 10000}, apart},
		{budgetOnly, apart},
	} {
		got := names(c.o.Group(g, pop, DefaultBudget))
		sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: Group = %v, want %v", c.o, got, c.want)
		}
	}
}

// BenchmarkGroup groups an image of 300 paths, the size of the benchmark
// corpus's larger images: a whole random package set.
func BenchmarkGroup(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 1))
	img, err := closure.New(randomPaths(r, 300), nil)
	if err != nil {
		b.Fatal(err)
	}
	pop := closure.Compute(img)
	for _, budget := range []int{10, 100} {
		b.Run(fmt.Sprintf("budget%d", budget), func(b *testing.B) {
			for b.Loop() {
				Group(img, pop, budget)
			}
		})
	}
}

// TestGroupOrder orders the worked example's layers with each exponent of
// the odds (GroupOptions.Order): the default's fourth root, size alone
// and the plain odds, which puts zlib (popular, small) before libcurl. The
// layers themselves stay the same.
func TestGroupOrder(t *testing.T) {
	g, pop := exampleGraph(t)
	for _, c := range []struct {
		o    GroupOptions
		want []string
	}{
		{budgetOnly, []string{"glibc", "openssl", "libcurl", "curl", "zlib", "nghttp2"}},
		{GroupOptions{PerLayer: -1, Order: DefaultOrder}, []string{"glibc", "openssl", "libcurl", "curl", "zlib", "nghttp2"}},
		{GroupOptions{PerLayer: -1, Order: -1}, []string{"glibc", "openssl", "libcurl", "curl", "nghttp2", "zlib"}},
		{GroupOptions{PerLayer: -1, Order: 1}, []string{"glibc", "openssl", "zlib", "libcurl", "nghttp2", "curl"}},
	} {
		var got []string
		for _, l := range names(c.o.Group(g, pop, DefaultBudget)) {
			if len(l) != 1 {
				t.Fatalf("%+v: layer %v, want one path a layer", c.o, l)
			}
			got = append(got, l[0])
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: order %v, want %v", c.o, got, c.want)
		}
	}
}
