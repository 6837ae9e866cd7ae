package sim

import (
	"testing"

	"github.com/nixery-go/nixery/closure"
)

// TestUpdated: the updated package's path and exactly the paths that
// depend on it change; the graph keeps its shape and sizes.
func TestUpdated(t *testing.T) {
	u := Synthetic(1, 200)
	sizes := SyntheticSizes(u)
	lib := u.Packages["gcc-libs"]
	nu, ns, changed, err := u.Updated("gcc-libs", sizes)
	if err != nil {
		t.Fatal(err)
	}
	if nu.Graph.Len() != u.Graph.Len() {
		t.Fatalf("%d paths after, %d before", nu.Graph.Len(), u.Graph.Len())
	}
	holds := func(g *closure.Graph, p, q string) bool {
		for _, c := range g.Closure(p) {
			if c == q {
				return true
			}
		}
		return false
	}
	for _, q := range u.Graph.Paths() {
		n, ok := changed[q.Path]
		if want := holds(u.Graph, q.Path, lib); ok != want {
			t.Errorf("%s: changed %v, depends on gcc-libs %v", q.Path, ok, want)
		}
		if !ok {
			n = q.Path
		} else if n == q.Path || !closure.ValidStorePath(n) || closure.Name(n) != closure.Name(q.Path) {
			t.Errorf("%s renamed %q", q.Path, n)
		}
		nq, found := nu.Graph.Lookup(n)
		if !found || nq.NarSize != q.NarSize || len(nq.References) != len(q.References) || ns.Paths[n] != sizes.Paths[q.Path] {
			t.Errorf("%s -> %s: %+v found %v", q.Path, n, nq, found)
		}
	}
	if len(changed) < 2 || changed[u.Packages["glibc"]] != "" {
		t.Errorf("changed: %d paths, glibc %q", len(changed), changed[u.Packages["glibc"]])
	}
	if err := nu.Validate(); err != nil {
		t.Error(err)
	}
	if _, _, _, err := u.Updated("no-such-package", sizes); err == nil {
		t.Error("an unknown package was updated")
	}
}

// perPath puts every path in a layer of its own.
func perPath(g *closure.Graph, _ closure.Popularity, _ int) [][]string {
	var ls [][]string
	for _, p := range g.Paths() {
		ls = append(ls, []string{p.Path})
	}
	return ls
}

// TestSimulateUpdates: one layer per path re-pulls exactly the changed
// paths and keeps every other layer; one layer per image re-pulls the
// whole closure and has no layer without a changed path.
func TestSimulateUpdates(t *testing.T) {
	u := Synthetic(1, 200)
	sizes := SyntheticSizes(u)
	w, err := u.Generate(ManySmall, 1, 30)
	if err != nil {
		t.Fatal(err)
	}
	algos := []Algorithm{{Name: "per-path", Group: perPath}, {Name: "single", Group: SingleLayer}}
	rs, err := SimulateUpdates(u, []Workload{w}, algos, 100, sizes, []string{"gcc-libs"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results", len(rs))
	}
	pp, single := rs[0], rs[1]
	if pp.Images == 0 || pp.Images != single.Images {
		t.Fatalf("images: %d, %d", pp.Images, single.Images)
	}
	if want := pp.ChangedBytes + int64(pp.PulledLayers)*sizes.Overhead; pp.PulledBytes != want || pp.Lost != 0 || pp.Kept == 0 {
		t.Errorf("per path: %+v, want %d bytes pulled, no layer lost", pp, want)
	}
	if single.PulledBytes <= single.ChangedBytes || single.Kept+single.Lost != 0 || single.PulledLayers != single.Images {
		t.Errorf("single layer: %+v", single)
	}
	if r := pp.Ratio(); r < 1 || r > 1.1 {
		t.Errorf("per path ratio %.3f", r)
	}
	picks, err := UpdatePackages(u, []Workload{w})
	if err != nil || len(picks) == 0 || len(picks) > 3 {
		t.Errorf("UpdatePackages: %v, %v", picks, err)
	}
}
