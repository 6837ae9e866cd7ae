package layers

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/closure"
)

// storePath returns a valid store path for name, with a hash derived from it.
func storePath(name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	h := make([]byte, 32)
	x := uint64(14695981039346656037)
	for _, c := range []byte(name) {
		x = (x ^ uint64(c)) * 1099511628211
	}
	for i := range h {
		x = x*6364136223846793005 + 1442695040888963407
		h[i] = alphabet[x>>59]
	}
	return closure.StoreDir + "/" + string(h) + "-" + name
}

// exampleGraph is the worked example of the package documentation.
func exampleGraph(t testing.TB) (*closure.Graph, closure.Popularity) {
	t.Helper()
	const M = 1 << 20
	s := storePath
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

func TestGroupExample(t *testing.T) {
	g, pop := exampleGraph(t)
	for _, tc := range []struct {
		budget int
		want   [][]string
	}{
		{DefaultBudget, [][]string{{"glibc"}, {"openssl"}, {"zlib"}, {"libcurl", "nghttp2"}, {"curl"}}},
		{5, [][]string{{"glibc"}, {"openssl"}, {"zlib"}, {"libcurl", "nghttp2"}, {"curl"}}},
		{4, [][]string{{"glibc"}, {"openssl"}, {"libcurl", "nghttp2"}, {"curl", "zlib"}}},
		{3, [][]string{{"glibc"}, {"openssl"}, {"curl", "libcurl", "nghttp2", "zlib"}}},
		{2, [][]string{{"glibc"}, {"curl", "libcurl", "nghttp2", "openssl", "zlib"}}},
		{1, [][]string{{"curl", "glibc", "libcurl", "nghttp2", "openssl", "zlib"}}},
	} {
		if got := names(Group(g, pop, tc.budget)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("budget %d: Group = %v, want %v", tc.budget, got, tc.want)
		}
	}
}

func TestGroupEmptyAndNilPopularity(t *testing.T) {
	if got := Group(&closure.Graph{}, nil, 10); got != nil {
		t.Errorf("Group(empty) = %v, want nil", got)
	}
	g, _ := exampleGraph(t)
	// Without popularity every edge is free: one atom per top-level path.
	if got, want := names(Group(g, nil, 0)), [][]string{{"curl", "glibc", "libcurl", "nghttp2", "openssl", "zlib"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Group(nil popularity) = %v, want %v", got, want)
	}
}

// randomPaths returns a random DAG of n paths: path i references a few of the
// paths before it, more often the low-numbered ("popular") ones.
func randomPaths(r *rand.Rand, n int) []closure.Path {
	paths := make([]closure.Path, n)
	for i := range paths {
		paths[i].Path = storePath(fmt.Sprintf("p%d-1.0", i))
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
// the input order for one random graph.
func groupInvariants(t *testing.T, seed uint64, n, budget int) {
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
	got := Group(img, pop, budget)
	b := budget
	if b < 1 {
		b = DefaultBudget
	}
	checkPartition(t, img, got, b)
	if again := Group(img, pop, budget); !reflect.DeepEqual(got, again) {
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
	if again := Group(img2, pop, budget); !reflect.DeepEqual(got, again) {
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
// budget that does not force merges, two images that both hold the closure S
// of a top-level package X lay S out in exactly the same layers, whatever else
// they hold.
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
			for _, l := range Group(img, pop, img.Len()) {
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
	for budget := 2; budget <= 5; budget++ {
		got := Group(g, pop, budget)
		if len(got[0]) != 1 || !strings.HasSuffix(got[0][0], "-glibc") {
			t.Errorf("budget %d: first layer %v, want glibc alone", budget, names(got[:1]))
		}
	}
}
