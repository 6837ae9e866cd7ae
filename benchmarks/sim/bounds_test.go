package sim

import (
	"testing"

	"github.com/nixery-go/nixery/closure"
)

// TestBounds works the bounds out by hand on three images: {a, b}, then
// {a, c}, then {a, b, c}. The chain rule reuses at most a from the first for
// the second (c downloaded), and a and b or a and c for the third (the
// other downloaded again). The first image's new paths a and b are held
// by the later images {a,c} and {a,b,c} and by {a,b,c} alone: two layers;
// the second's c one more; the third has nothing new.
func TestBounds(t *testing.T) {
	sp := func(n string) string { return SyntheticStorePath(0, n) }
	g, err := closure.New([]closure.Path{
		{Path: sp("a"), NarSize: 1}, {Path: sp("b"), NarSize: 1}, {Path: sp("c"), NarSize: 1},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	u := &Universe{Name: "t", Graph: g, Packages: map[string]string{"a": sp("a"), "b": sp("b"), "c": sp("c")}}
	w := Workload{Shape: ManySmall, Seed: 1, Images: []Image{
		{Packages: []string{"a", "b"}}, {Packages: []string{"a", "c"}}, {Packages: []string{"a", "b", "c"}},
	}}
	sizes := Sizes{Paths: map[string]int64{sp("a"): 100, sp("b"): 10, sp("c"): 1}, Overhead: 5}
	bs, err := Bounds(u, []Workload{w}, sizes)
	if err != nil {
		t.Fatal(err)
	}
	b := bs[0]
	// Ideal 111. Chain: 110, then 101-100 = 1, then 111-110 = 1.
	if b.IdealBytes != 111 || b.ChainBytes != 112 || b.IdealLayers != 3 {
		t.Errorf("bound %+v, want ideal 111, chain 112, 3 layers", b)
	}
	if got := b.IdealTime(PullModel{Bandwidth: 1, PerLayer: 0}, sizes); got != 126 {
		t.Errorf("ideal time %v s at 1 B/s, want 126 (111 bytes and 3 layers of 5)", got)
	}
	if _, err := Bounds(u, []Workload{w}, Sizes{Paths: map[string]int64{sp("a"): 1}}); err == nil {
		t.Error("no error for a path without a size")
	}
}
