package sim

import (
	"testing"
)

// TestArchive loads the committed archive snapshot and checks what the
// simulation relies on: a large acyclic graph, the shell and always-added
// packages, a compressed size for every path, and workloads of every shape.
func TestArchive(t *testing.T) {
	u, sizes, err := Archive()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := u.Graph.Len(); n < 50000 {
		t.Fatalf("archive graph has %d nodes, want tens of thousands", n)
	}
	if len(u.Shell) != 4 || len(u.Always) != 2 {
		t.Fatalf("shell %v, always %v", u.Shell, u.Always)
	}
	for _, p := range u.Graph.Paths() {
		if _, ok := sizes.Paths[p.Path]; !ok {
			t.Fatalf("no size for %s", p.Path)
		}
	}
	// libc6 is in almost every closure: its popularity is most of the set.
	bash := u.Packages["bashInteractive"]
	if c := u.Graph.Closure(bash); len(c) < 3 {
		t.Fatalf("bash closure %v", c)
	}
	if got, want := u.ClosureSizes[bash], u.Graph.ClosureSize(bash); got != want {
		t.Errorf("precomputed closure size of bash %d, graph says %d", got, want)
	}
	var libc string
	for _, p := range u.Graph.Closure(bash) {
		if len(p) > 44 && p[44:50] == "libc6-" {
			libc = p
		}
	}
	if pop, _ := u.Popularity.Of(libc); libc == "" || pop < int64(u.Graph.Len()/2) {
		t.Errorf("libc6 (%q) popularity %d of %d paths", libc, pop, u.Graph.Len())
	}
	for _, shape := range Shapes {
		w, err := u.Generate(shape, 1, 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Images) != 20 {
			t.Fatalf("%s: %d images", w.Name(), len(w.Images))
		}
	}
	// The held-out sweep: every shape with each seed, 20, 40 and 60 images.
	ws, err := ArchiveSweep.Workloads(u)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 9 {
		t.Fatalf("%d held-out workloads", len(ws))
	}
	for i, w := range ws {
		if want := []int{20, 40, 60}[i%3]; len(w.Images) != want || w.Seed != ArchiveSweep.Seeds[i%3] {
			t.Errorf("%s: %d images, want %d", w.Name(), len(w.Images), want)
		}
		for _, s := range ArchiveTuningSweep.Seeds {
			if w.Seed == s {
				t.Errorf("held-out seed %d is a tuning seed", s)
			}
		}
	}
}
