package corpus

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// archiveIndex is a small archive index: a cycle libc6 <-> libgcc-s1, a
// virtual package awk provided by mawk and original-awk, versioned and
// :any relations, an alternative whose first choice does not exist, and
// a three-package cycle aa -> bb -> cc -> aa.
const archiveIndex = `Package: libc6
Version: 2.36-9
Installed-Size: 100
Depends: libgcc-s1
Size: 3000

Package: libgcc-s1
Version: 12.2.0-14
Installed-Size: 10
Depends: libc6 (>= 2.35)
Size: 500

Package: mawk
Version: 1.3.4
Installed-Size: 20
Pre-Depends: libc6 (>= 2.34)
Provides: awk
Size: 700

Package: original-awk
Version: 2012
Installed-Size: 20
Depends: libc6
Provides: awk
Size: 600

Package: tool
Version: 1:1.0~rc1
Installed-Size: 5
Depends: awk, perl:any (>= 5) | libc6, missing | libgcc-s1, tool
Size: 50

Package: aa
Version: 1
Depends: bb
Size: 1

Package: bb
Version: 1
Depends: cc
Size: 2

Package: cc
Version: 1
Depends: aa, tool
Size: 4

Package: cc
Version: 2
Size: 99
`

func TestCondenseArchive(t *testing.T) {
	pkgs, err := ParseArchive(strings.NewReader(archiveIndex))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 8 {
		t.Fatalf("%d packages, want 8 (cc once)", len(pkgs))
	}
	nodes := CondenseArchive(pkgs)
	want := []ArchiveNode{
		{Name: "aa", Version: "1", Members: []string{"aa", "bb", "cc"}, Size: 7, Deps: []string{"tool"}},
		{Name: "libc6", Version: "2.36-9", Members: []string{"libc6", "libgcc-s1"}, Size: 3500, InstalledSize: 110 * 1024},
		{Name: "mawk", Version: "1.3.4", Members: []string{"mawk"}, Size: 700, InstalledSize: 20 * 1024, Deps: []string{"libc6"}},
		{Name: "original-awk", Version: "2012", Members: []string{"original-awk"}, Size: 600, InstalledSize: 20 * 1024, Deps: []string{"libc6"}},
		// awk: mawk (sorts first of the providers); perl: absent, its
		// group's first alternative does not resolve, so libc6; missing:
		// libgcc-s1, which is libc6's node; tool itself: dropped.
		{Name: "tool", Version: "1:1.0~rc1", Members: []string{"tool"}, Size: 50, InstalledSize: 5 * 1024, Deps: []string{"libc6", "mawk"}},
	}
	if !reflect.DeepEqual(nodes, want) {
		t.Errorf("CondenseArchive =\n%+v\nwant\n%+v", nodes, want)
	}
	var buf bytes.Buffer
	if err := WriteArchiveTSV(&buf, nodes, "test"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if lines[0] != ArchiveTSVHeader || lines[1] != "# test" || len(lines) != 7 {
		t.Fatalf("TSV:\n%s", buf.String())
	}
	if lines[2] != "aa\t1\t7\t0\tbb,cc\ttool" || lines[3] != "libc6\t2.36-9\t3500\t112640\tlibgcc-s1\t-" {
		t.Errorf("TSV lines %q, %q", lines[2], lines[3])
	}
}

func TestTarjanDeep(t *testing.T) {
	// A chain of 100000 vertices closed into one cycle: one component,
	// without overflowing a stack.
	n := 100000
	succ := make([][]int, n)
	for i := range succ {
		succ[i] = []int{(i + 1) % n}
	}
	comp := tarjan(succ)
	for i, c := range comp {
		if c != comp[0] {
			t.Fatalf("vertex %d in component %d, vertex 0 in %d", i, c, comp[0])
		}
	}
	// A DAG: every vertex its own component.
	succ = [][]int{{1, 2}, {2}, {}}
	if comp := tarjan(succ); comp[0] == comp[1] || comp[1] == comp[2] {
		t.Errorf("DAG components %v", comp)
	}
}
