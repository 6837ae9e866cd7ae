package corpus

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// ArchivePackage is one binary package of a Debian archive index (a
// Packages file, as apt keeps under /var/lib/apt/lists).
type ArchivePackage struct {
	Name, Version string
	// Size is the size of the .deb in bytes (compressed); InstalledSize
	// is dpkg's estimate of the unpacked size in bytes.
	Size, InstalledSize int64
	// Depends lists the Pre-Depends and then the Depends relations, each a
	// group of alternatives, version constraints and ":any" dropped.
	Depends [][]string
	// Provides lists the virtual package names the package provides.
	Provides []string
}

// ParseArchive parses a Debian archive index (a decompressed Packages
// file). A name listed more than once is kept at its first stanza, so that
// names stay unique. The result is sorted by name.
func ParseArchive(r io.Reader) ([]ArchivePackage, error) {
	var out []ArchivePackage
	seen := map[string]bool{}
	num := func(fields map[string]string, name, f string) (int64, error) {
		s := strings.TrimSpace(fields[f])
		if s == "" {
			return 0, nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%w: package %s: bad %s %q", ErrSyntax, name, f, s)
		}
		return v, nil
	}
	flush := func(fields map[string]string, line int) error {
		name := fields["Package"]
		if name == "" {
			return fmt.Errorf("%w: stanza ending at line %d has no Package field", ErrSyntax, line)
		}
		if seen[name] {
			return nil
		}
		seen[name] = true
		p := ArchivePackage{Name: name, Version: fields["Version"]}
		var err error
		if p.Size, err = num(fields, name, "Size"); err != nil {
			return err
		}
		kib, err := num(fields, name, "Installed-Size")
		if err != nil {
			return err
		}
		p.InstalledSize = kib * 1024
		for _, f := range []string{"Pre-Depends", "Depends"} {
			groups, err := parseRelations(fields[f])
			if err != nil {
				return fmt.Errorf("%w: package %s: %s: %v", ErrSyntax, name, f, err)
			}
			p.Depends = append(p.Depends, groups...)
		}
		prov, err := parseRelations(fields["Provides"])
		if err != nil {
			return fmt.Errorf("%w: package %s: Provides: %v", ErrSyntax, name, err)
		}
		for _, g := range prov {
			p.Provides = append(p.Provides, g...)
		}
		out = append(out, p)
		return nil
	}
	if err := stanzas(r, flush); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ArchiveNode is a node of the condensed archive graph: one package, or a
// dependency cycle (a strongly connected component) of several.
type ArchiveNode struct {
	// Name is the member whose name sorts first, Version its version.
	Name, Version string
	// Members lists every package of the node, sorted (Name first).
	Members []string
	// Size and InstalledSize are the sums over the members.
	Size, InstalledSize int64
	// Deps are the names of the nodes this node depends on, sorted.
	Deps []string
}

// CondenseArchive resolves the dependencies of an archive's packages and
// condenses its cycles, giving an acyclic graph like a Nix package set's.
//
// Each dependency group resolves to its first alternative: the package of
// that name, or, for a virtual name no package has, the provider whose name
// sorts first. A first alternative that nothing has or provides falls back
// to the next alternative; a group none of whose alternatives resolves is
// ignored, as is a dependency of a package on itself. The strongly
// connected components of the resolved graph (Tarjan's algorithm) become
// one node each, its size the sum of its members' sizes. The result is
// sorted by name.
func CondenseArchive(pkgs []ArchivePackage) []ArchiveNode {
	sorted := append([]ArchivePackage(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	index := make(map[string]int, len(sorted))
	for i, p := range sorted {
		index[p.Name] = i
	}
	providers := map[string]int{} // virtual name -> first provider
	for i, p := range sorted {
		for _, v := range p.Provides {
			if _, ok := providers[v]; !ok {
				providers[v] = i // sorted, so the first is the lowest name
			}
		}
	}
	resolve := func(group []string) (int, bool) {
		for _, a := range group {
			if i, ok := index[a]; ok {
				return i, true
			}
			if i, ok := providers[a]; ok {
				return i, true
			}
		}
		return 0, false
	}
	n := len(sorted)
	deps := make([][]int, n)
	for i, p := range sorted {
		set := map[int]bool{}
		for _, g := range p.Depends {
			if j, ok := resolve(g); ok && j != i && !set[j] {
				set[j] = true
				deps[i] = append(deps[i], j)
			}
		}
		sort.Ints(deps[i])
	}
	comp := tarjan(deps)
	// Components are numbered in Tarjan's order; build nodes.
	nc := 0
	for _, c := range comp {
		nc = max(nc, c+1)
	}
	members := make([][]int, nc)
	for i, c := range comp {
		members[c] = append(members[c], i) // ascending, so sorted by name
	}
	out := make([]ArchiveNode, nc)
	for c, ms := range members {
		first := sorted[ms[0]]
		nd := ArchiveNode{Name: first.Name, Version: first.Version}
		set := map[int]bool{}
		for _, m := range ms {
			nd.Members = append(nd.Members, sorted[m].Name)
			nd.Size += sorted[m].Size
			nd.InstalledSize += sorted[m].InstalledSize
			for _, d := range deps[m] {
				if dc := comp[d]; dc != c && !set[dc] {
					set[dc] = true
				}
			}
		}
		for dc := range set {
			nd.Deps = append(nd.Deps, sorted[members[dc][0]].Name)
		}
		sort.Strings(nd.Deps)
		out[c] = nd
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// tarjan returns the strongly connected component of every vertex of the
// graph succ, iteratively (the graph is deep).
func tarjan(succ [][]int) []int {
	n := len(succ)
	idx := make([]int, n)
	low := make([]int, n)
	comp := make([]int, n)
	on := make([]bool, n)
	for i := range idx {
		idx[i], comp[i] = -1, -1
	}
	var stack []int
	next, nc := 0, 0
	type frame struct{ v, k int }
	for s := 0; s < n; s++ {
		if idx[s] >= 0 {
			continue
		}
		call := []frame{{s, 0}}
		idx[s], low[s] = next, next
		next++
		stack = append(stack, s)
		on[s] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.k < len(succ[v]) {
				w := succ[v][f.k]
				f.k++
				if idx[w] < 0 {
					idx[w], low[w] = next, next
					next++
					stack = append(stack, w)
					on[w] = true
					call = append(call, frame{w, 0})
				} else if on[w] {
					low[v] = min(low[v], idx[w])
				}
				continue
			}
			if low[v] == idx[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					on[w] = false
					comp[w] = nc
					if w == v {
						break
					}
				}
				nc++
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				low[u] = min(low[u], low[v])
			}
		}
	}
	return comp
}

// ArchiveTSVHeader is the first line of the file [WriteArchiveTSV] writes.
const ArchiveTSVHeader = "# name\tversion\tsize\tinstalled_size\tmembers\tdeps"

// WriteArchiveTSV writes condensed nodes as tab-separated lines: name,
// version, size, installed size (bytes), the other members and the
// dependencies (both comma-separated, "-" when empty), after the header
// line and the given comment lines (each prefixed by "# ").
func WriteArchiveTSV(w io.Writer, nodes []ArchiveNode, comments ...string) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, ArchiveTSVHeader)
	for _, c := range comments {
		fmt.Fprintf(bw, "# %s\n", c)
	}
	list := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ",")
	}
	for _, nd := range nodes {
		fmt.Fprintf(bw, "%s\t%s\t%d\t%d\t%s\t%s\n", nd.Name, nd.Version, nd.Size, nd.InstalledSize, list(nd.Members[1:]), list(nd.Deps))
	}
	return bw.Flush()
}
