package corpus

import (
	"fmt"
	"sort"
	"strings"
)

// Edge is a dependency from one Debian package to another, by name.
type Edge struct {
	From, To string
}

// DepGraph is the resolved, acyclic dependency graph of a set of installed
// Debian packages.
type DepGraph struct {
	// Packages are the packages, sorted by name.
	Packages []DebPackage
	// Deps maps each package name to the names of the packages it depends
	// on, sorted, without duplicates, self-dependencies or dropped edges.
	// Every package has an entry.
	Deps map[string][]string
	// Dropped lists the edges removed to break dependency cycles, sorted.
	Dropped []Edge
}

// Resolve turns installed packages into an acyclic dependency graph.
//
// Each dependency group is resolved to one installed package: the first
// alternative that is installed under its own name, or else the first
// alternative that an installed package provides (the provider whose name
// sorts first, when several do). A group that no installed package
// satisfies is ignored, as is a package depending on itself.
//
// Nix forbids reference cycles between store paths, and Debian has them
// (libc6 and libgcc-s1 depend on each other). Resolve breaks them with a
// depth-first search that starts from every package in name order and
// follows dependencies in name order: an edge to a package still on the
// search stack (a back edge) is dropped and recorded in [DepGraph.Dropped].
// Removing all back edges of one DFS leaves a DAG, and the fixed visiting
// order makes the choice deterministic. For example, with a -> b, b -> c
// and c -> a, the search from a walks a, b, c and drops c -> a.
func Resolve(pkgs []DebPackage) *DepGraph {
	sorted := append([]DebPackage(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	installed := map[string]bool{}
	for _, p := range sorted {
		installed[p.Name] = true
	}
	providers := map[string][]string{} // virtual name -> sorted providers
	for _, p := range sorted {
		for _, v := range p.Provides {
			providers[v] = append(providers[v], p.Name)
		}
	}
	resolve := func(group []string) (string, bool) {
		for _, a := range group {
			if installed[a] {
				return a, true
			}
		}
		for _, a := range group {
			if ps := providers[a]; len(ps) > 0 {
				return ps[0], true
			}
		}
		return "", false
	}
	deps := make(map[string][]string, len(sorted))
	for _, p := range sorted {
		set := map[string]bool{}
		for _, g := range p.Depends {
			if d, ok := resolve(g); ok && d != p.Name {
				set[d] = true
			}
		}
		ds := make([]string, 0, len(set))
		for d := range set {
			ds = append(ds, d)
		}
		sort.Strings(ds)
		deps[p.Name] = ds
	}

	// Drop back edges of a DFS in name order.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	dropped := map[Edge]bool{}
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		for _, d := range deps[n] {
			switch color[d] {
			case white:
				visit(d)
			case grey:
				dropped[Edge{n, d}] = true
			}
		}
		color[n] = black
	}
	for _, p := range sorted {
		if color[p.Name] == white {
			visit(p.Name)
		}
	}
	g := &DepGraph{Packages: sorted, Deps: deps}
	for e := range dropped {
		g.Dropped = append(g.Dropped, e)
	}
	sort.Slice(g.Dropped, func(i, j int) bool {
		a, b := g.Dropped[i], g.Dropped[j]
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	for _, e := range g.Dropped {
		ds := deps[e.From]
		k := sort.SearchStrings(ds, e.To)
		deps[e.From] = append(ds[:k:k], ds[k+1:]...)
	}
	return g
}

// Closure returns the names of roots and every package they depend on,
// directly or not, sorted. Unknown names are an error.
func (g *DepGraph) Closure(roots ...string) ([]string, error) {
	seen := map[string]bool{}
	stack := []string{}
	for _, r := range roots {
		if _, ok := g.Deps[r]; !ok {
			return nil, fmt.Errorf("corpus: package %q is not installed", r)
		}
		if !seen[r] {
			seen[r] = true
			stack = append(stack, r)
		}
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range g.Deps[n] {
			if !seen[d] {
				seen[d] = true
				stack = append(stack, d)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// AttrName turns a Debian package name into the attribute name the corpus
// gives it: '.' becomes '_' and '+' becomes 'P', so "libstdc++6" is
// "libstdcPP6" and "gir1.2-glib-2.0" is "gir1_2-glib-2_0". Debian names
// contain neither '_' nor upper-case letters, so the mapping is one to one,
// and the result passes nixery's name grammar as a single attribute
// (no dots). Nixery's case-insensitive lookup finds "libstdcpp6" too.
func AttrName(debName string) string {
	return strings.NewReplacer(".", "_", "+", "P").Replace(debName)
}

// storeName returns a valid Nix store path name "<name>-<version>": Nix
// allows letters, digits and "+-._?=", so the epoch colon and '~' become
// '_'.
func storeName(name, version string) string {
	s := name
	if version != "" {
		s += "-" + version
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("+-._?=", r):
			return r
		}
		return '_'
	}, s)
}
