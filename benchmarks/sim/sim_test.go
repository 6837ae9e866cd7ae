package sim

import (
	"math"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/nixery-go/nixery/closure"
)

// peersGraph is the worked example of PEERS.md: A->B,G; B->C,E; C->D,E;
// D->F; E->F. NAR sizes are 1 to 7 MB in name order.
func peersGraph(t *testing.T) (*closure.Graph, map[string]string) {
	t.Helper()
	sp := map[string]string{}
	for _, n := range []string{"A", "B", "C", "D", "E", "F", "G"} {
		sp[n] = SyntheticStorePath(0, n)
	}
	refs := map[string][]string{"A": {"B", "G"}, "B": {"C", "E"}, "C": {"D", "E"}, "D": {"F"}, "E": {"F"}}
	var paths []closure.Path
	for i, n := range []string{"A", "B", "C", "D", "E", "F", "G"} {
		p := closure.Path{Path: sp[n], NarSize: int64(i+1) << 20}
		for _, r := range refs[n] {
			p.References = append(p.References, sp[r])
		}
		paths = append(paths, p)
	}
	g, err := closure.New(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g, sp
}

// named maps layers of store paths back to the example's names, each layer
// sorted.
func named(ls [][]string) [][]string {
	out := make([][]string, len(ls))
	for i, l := range ls {
		for _, p := range l {
			out[i] = append(out[i], closure.Name(p))
		}
		sort.Strings(out[i])
	}
	return out
}

func TestContestPopularityPeersExample(t *testing.T) {
	g, sp := peersGraph(t)
	pc := ContestPopularity(g)
	want := map[string]float64{"A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 9, "G": 2}
	for n, w := range want {
		if got := pc[g.Index(sp[n])]; got != w {
			t.Errorf("popularity of %s = %v, want %v", n, got, w)
		}
	}
}

func TestPopularityContestLayers(t *testing.T) {
	g, _ := peersGraph(t)
	// Order: F9 E5 D4 C3 B2 G2 A1 (B before G by name).
	for _, tc := range []struct {
		budget int
		want   [][]string
	}{
		{100, [][]string{{"F"}, {"E"}, {"D"}, {"C"}, {"B"}, {"G"}, {"A"}}},
		{7, [][]string{{"F"}, {"E"}, {"D"}, {"C"}, {"B"}, {"G"}, {"A"}}},
		{4, [][]string{{"F"}, {"E"}, {"D"}, {"A", "B", "C", "G"}}},
		{1, [][]string{{"A", "B", "C", "D", "E", "F", "G"}}},
	} {
		if got := named(PopularityContest(g, nil, tc.budget)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("budget %d: %v, want %v", tc.budget, got, tc.want)
		}
	}
}

func TestSingleLayer(t *testing.T) {
	g, _ := peersGraph(t)
	if got := named(SingleLayer(g, nil, 10)); !reflect.DeepEqual(got, [][]string{{"A", "B", "C", "D", "E", "F", "G"}}) {
		t.Errorf("SingleLayer = %v", got)
	}
}

func TestSizeGreedy(t *testing.T) {
	g, _ := peersGraph(t)
	// Sizes: G7 F6 E5 D4 C3 B2 A1 (MB).
	for _, tc := range []struct {
		budget int
		want   [][]string
	}{
		{1, [][]string{{"A", "B", "C", "D", "E", "F", "G"}}},
		{3, [][]string{{"G"}, {"F"}, {"A", "B", "C", "D", "E"}}},
		{6, [][]string{{"G"}, {"F"}, {"E"}, {"D"}, {"C"}, {"A", "B"}}},
		{7, [][]string{{"G"}, {"F"}, {"E"}, {"D"}, {"C"}, {"B"}, {"A"}}},
		{100, [][]string{{"G"}, {"F"}, {"E"}, {"D"}, {"C"}, {"B"}, {"A"}}},
	} {
		if got := named(SizeGreedy(g, nil, tc.budget)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("budget %d: %v, want %v", tc.budget, got, tc.want)
		}
	}
}

func TestAutoLayer(t *testing.T) {
	g, _ := peersGraph(t)
	// Roots: A, then by size G(7) F(6) E(5) D(4) C(3) B(2).
	for _, tc := range []struct {
		budget int
		want   [][]string
	}{
		// Only A: everything is used through A.
		{1, [][]string{{"A", "B", "C", "D", "E", "F", "G"}}},
		// A and G: G is a root of its own.
		{2, [][]string{{"A", "B", "C", "D", "E", "F"}, {"G"}}},
		// Adding F gives {A,B,C,D,E}, {F}, {G}.
		{3, [][]string{{"A", "B", "C", "D", "E"}, {"F"}, {"G"}}},
		{4, [][]string{{"A", "B", "C", "D"}, {"E"}, {"F"}, {"G"}}},
		{100, [][]string{{"A"}, {"B"}, {"C"}, {"D"}, {"E"}, {"F"}, {"G"}}},
	} {
		got := named(AutoLayer(g, nil, tc.budget))
		sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("budget %d: %v, want %v", tc.budget, got, tc.want)
		}
	}
}

func TestAutoLayerSharedUsers(t *testing.T) {
	// Two top-level paths X and Y share Z; Z's dependency W is used only
	// through Z. With roots X and Y (budget 3), Z and W get one layer for
	// the user set {X, Y}.
	x, y, z, w := SyntheticStorePath(0, "X"), SyntheticStorePath(0, "Y"), SyntheticStorePath(0, "Z"), SyntheticStorePath(0, "W")
	g, err := closure.New([]closure.Path{
		{Path: x, NarSize: 1, References: []string{z}},
		{Path: y, NarSize: 1, References: []string{z}},
		{Path: z, NarSize: 1, References: []string{w}},
		{Path: w, NarSize: 1},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := named(AutoLayer(g, nil, 3))
	sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
	if want := [][]string{{"W", "Z"}, {"X"}, {"Y"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("AutoLayer = %v, want %v", got, want)
	}
}

func TestNixeryDominator(t *testing.T) {
	g, _ := peersGraph(t)
	// Popularity (upstream's map): F is popular (>= 100) and gets a root
	// edge; the rest count as given.
	pop := closure.Popularity{"A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 150, "G": 2}
	// Dominators from the virtual root: A (top-level) and F (popular) are
	// root children. A dominates B, C, D, E, G; F only itself.
	// Ratings: A 1 * (1+2+3+4+5+7 MB) = 22 MB, F 150 * 6 MB = 900 MB.
	got := named(NixeryDominator(g, pop, 10))
	want := [][]string{{"F"}, {"A", "B", "C", "D", "E", "G"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NixeryDominator = %v, want %v", got, want)
	}
	if got := named(NixeryDominator(g, pop, 1)); !reflect.DeepEqual(got, [][]string{{"A", "B", "C", "D", "E", "F", "G"}}) {
		t.Errorf("budget 1: %v", got)
	}
	// Without popularity F is not a root child: one layer under A.
	if got := named(NixeryDominator(g, nil, 10)); !reflect.DeepEqual(got, [][]string{{"A", "B", "C", "D", "E", "F", "G"}}) {
		t.Errorf("no popularity: %v", got)
	}
}

func TestDominators(t *testing.T) {
	// 0 -> 1, 2; 1 -> 3; 2 -> 3; 3 -> 4: idom(3) = 0, idom(4) = 3.
	succ := [][]int{{1, 2}, {3}, {3}, {4}, {}}
	if got, want := dominators(succ, 0), []int{0, 0, 0, 0, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("dominators = %v, want %v", got, want)
	}
}

func TestNixeryForcedPopularity(t *testing.T) {
	if got := nixeryPopularity(nil, SyntheticStorePath(0, "nss-cacert-3.0")); got != 500000 {
		t.Errorf("cacert popularity %d", got)
	}
	if got := nixeryPopularity(nil, SyntheticStorePath(0, "zlib-1.0")); got != 1 {
		t.Errorf("missing popularity %d, want 1", got)
	}
}

// TestAlgorithmsPartition runs every comparator on random images of a
// synthetic package set and checks each result is a valid layering.
func TestAlgorithmsPartition(t *testing.T) {
	u := Synthetic(3, 150)
	w, err := u.Generate(FewLarge, 1, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range w.Images {
		g, err := u.Closure(im)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range Algorithms() {
			for _, b := range []int{1, 2, 5, 10, 40, 100} {
				ls := a.Group(g, u.Popularity, b)
				if err := checkLayers(g, ls, b); err != nil {
					t.Fatalf("%s budget %d on %s: %v", a.Name, b, im.Name(), err)
				}
				if again := a.Group(g, u.Popularity, b); !reflect.DeepEqual(ls, again) {
					t.Fatalf("%s is not deterministic", a.Name)
				}
			}
		}
	}
}

// TestSimulatePullAccounting checks pull and registry bytes on a hand-made
// sequence: images {A} (closure A,B,C,D,E,F,G) and {C} (C,D,E,F), with one
// layer per store path and with one layer per image.
func TestSimulatePullAccounting(t *testing.T) {
	g, sp := peersGraph(t)
	u := &Universe{Name: "peers", Graph: g, Packages: map[string]string{}}
	for n, p := range sp {
		u.Packages[n] = p
	}
	sizes := Sizes{Paths: map[string]int64{}, Overhead: 10}
	for i, n := range []string{"A", "B", "C", "D", "E", "F", "G"} {
		sizes.Paths[sp[n]] = int64(100 * (i + 1)) // A 100 ... G 700
	}
	perPath := Algorithm{Name: "per-path", Group: func(g *closure.Graph, _ closure.Popularity, _ int) [][]string {
		var out [][]string
		for _, p := range g.Paths() {
			out = append(out, []string{p.Path})
		}
		sort.Slice(out, func(i, j int) bool { return closure.Name(out[i][0]) < closure.Name(out[j][0]) })
		return out
	}}
	single := Algorithm{Name: "single", Group: SingleLayer}
	w1 := Workload{Shape: ManySmall, Seed: 1, Images: []Image{{Packages: []string{"A"}}, {Packages: []string{"C"}}, {Packages: []string{"A"}}}}
	w2 := Workload{Shape: FewLarge, Seed: 1, Images: []Image{{Packages: []string{"C"}}}}
	out, err := Simulate(u, []Workload{w1, w2}, []Algorithm{perPath, single}, []int{10}, sizes)
	if err != nil {
		t.Fatal(err)
	}
	const all = 100 + 200 + 300 + 400 + 500 + 600 + 700 // 2800
	const cdef = 300 + 400 + 500 + 600                  // 1800
	want := []Result{
		// Per path: 7 layers once, then nothing new.
		{Workload: "many-small/1", Algorithm: "per-path", PullBytes: all + 7*10, IdealBytes: all, Layers: 7, MaxLayers: 7},
		{Workload: "few-large/1", Algorithm: "per-path", PullBytes: cdef + 4*10, IdealBytes: cdef, Layers: 4, MaxLayers: 4},
		// Single layer: {A..G}, then {C..F} is new, then {A..G} is held.
		{Workload: "many-small/1", Algorithm: "single", PullBytes: all + 10 + cdef + 10, IdealBytes: all, Layers: 2, MaxLayers: 1},
		{Workload: "few-large/1", Algorithm: "single", PullBytes: cdef + 10, IdealBytes: cdef, Layers: 1, MaxLayers: 1},
	}
	if len(out.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(out.Results), len(want))
	}
	for i, w := range want {
		r := out.Results[i]
		if r.Workload != w.Workload || r.Algorithm != w.Algorithm || r.PullBytes != w.PullBytes ||
			r.IdealBytes != w.IdealBytes || r.Layers != w.Layers || r.MaxLayers != w.MaxLayers {
			t.Errorf("result %d = %+v, want %+v", i, r, w)
		}
	}
	// Chain rule: per path, image {C} lists C, D, E, F (name order)
	// while {A} listed A, B, C, ...: no common prefix, so C..F are
	// downloaded again; the third image repeats the first's chain.
	if got, want := out.Results[0].ChainBytes, int64(all+70+cdef+40); got != want {
		t.Errorf("per-path ChainBytes = %d, want %d", got, want)
	}
	if got, want := out.Results[2].ChainBytes, out.Results[2].PullBytes; got != want {
		t.Errorf("single ChainBytes = %d, want %d", got, want)
	}
	if r := out.Results[2]; math.Abs(r.PullRatio()-float64(all+10+cdef+10)/all) > 1e-12 {
		t.Errorf("PullRatio = %v", r.PullRatio())
	}
	// Registry: per path stores the 7 layers once across both workloads;
	// single stores {A..G} and {C..F}.
	wantReg := []Registry{
		{Algorithm: "per-path", Budget: 10, Bytes: all + 70, IdealBytes: all, Layers: 7},
		{Algorithm: "single", Budget: 10, Bytes: all + 10 + cdef + 10, IdealBytes: all, Layers: 2},
	}
	if !reflect.DeepEqual(out.Registry, wantReg) {
		t.Errorf("Registry = %+v, want %+v", out.Registry, wantReg)
	}
}

func TestSimulateRejectsBadLayering(t *testing.T) {
	g, sp := peersGraph(t)
	u := &Universe{Name: "peers", Graph: g, Packages: map[string]string{"A": sp["A"]}}
	sizes := SyntheticSizes(u)
	dropOne := Algorithm{Name: "bad", Group: func(g *closure.Graph, _ closure.Popularity, _ int) [][]string {
		return [][]string{{g.Paths()[0].Path}}
	}}
	w := Workload{Shape: ManySmall, Images: []Image{{Packages: []string{"A"}}}}
	if _, err := Simulate(u, []Workload{w}, []Algorithm{dropOne}, []int{10}, sizes); err == nil {
		t.Error("Simulate accepted a layering that loses paths")
	}
	if _, err := Simulate(u, []Workload{w}, []Algorithm{{Name: "single", Group: SingleLayer}}, []int{10}, Sizes{}); err == nil {
		t.Error("Simulate accepted missing sizes")
	}
}

func TestGenerate(t *testing.T) {
	u := Synthetic(1, 200)
	if err := u.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, shape := range Shapes {
		for seed := uint64(1); seed <= 3; seed++ {
			w, err := u.Generate(shape, seed, 50)
			if err != nil {
				t.Fatal(err)
			}
			if len(w.Images) != 50 {
				t.Fatalf("%s: %d images", w.Name(), len(w.Images))
			}
			again, _ := u.Generate(shape, seed, 50)
			if !reflect.DeepEqual(w, again) {
				t.Fatalf("%s: not deterministic", w.Name())
			}
			shells := 0
			for _, im := range w.Images {
				own := 0
				for _, p := range im.Packages {
					if !slices.Contains(u.Shell, p) {
						own++
					}
				}
				if own < 1 || own > 5 {
					t.Fatalf("%s: image %s has %d packages", w.Name(), im.Name(), own)
				}
				if im.Shell {
					shells++
				}
				g, err := u.Closure(im)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range u.Always {
					if g.Index(u.Packages[a]) < 0 {
						t.Fatalf("%s: image %s lacks %s", w.Name(), im.Name(), a)
					}
				}
			}
			if shells == 0 {
				t.Errorf("%s: no image with shell", w.Name())
			}
			if shape == TeamUpdates {
				// Each version differs from the one before by one package.
				for i := 1; i < len(w.Images); i++ {
					a, b := w.Images[i-1].Packages, w.Images[i].Packages
					if d := diff(a, b) + diff(b, a); d > 2 {
						t.Fatalf("%s: version %d changes %d packages", w.Name(), i, d)
					}
				}
			}
		}
	}
	other, _ := u.Generate(ManySmall, 2, 50)
	first, _ := u.Generate(ManySmall, 1, 50)
	if reflect.DeepEqual(first.Images, other.Images) {
		t.Error("seeds 1 and 2 give the same workload")
	}
	if _, err := u.Generate("nope", 1, 5); err == nil {
		t.Error("unknown shape accepted")
	}
}

func diff(a, b []string) int {
	n := 0
	for _, x := range a {
		if !slices.Contains(b, x) {
			n++
		}
	}
	return n
}

func TestImageName(t *testing.T) {
	im := Image{Packages: []string{"bashInteractive", "coreutils", "curl", "moreutils", "nano"}, Shell: true}
	if got := im.Name(); got != "shell/curl" {
		t.Errorf("Name = %q", got)
	}
	if got := (Image{Packages: []string{"git", "jq"}}).Name(); got != "git/jq" {
		t.Errorf("Name = %q", got)
	}
}
