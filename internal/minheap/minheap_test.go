package minheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSorts: pushing and popping gives every item in order, for heaps
// built by New from a slice and by Push, with duplicates.
func TestSorts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 50 {
		in := make([]int, n)
		for i := range in {
			in[i] = r.IntN(20)
		}
		want := slices.Sorted(slices.Values(in))
		less := func(a, b int) bool { return a < b }
		h := New(less, slices.Clone(in)...)
		p := New(less)
		for _, x := range in {
			p.Push(x)
		}
		for _, h := range []*Heap[int]{h, p} {
			var got []int
			for h.Len() > 0 {
				got = append(got, h.Pop())
			}
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d: popped %v, want %v", n, got, want)
			}
		}
	}
}

// TestInterleaved: pops between pushes always return the least item held.
func TestInterleaved(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	h := New(func(a, b int) bool { return a < b })
	var held []int
	for range 1000 {
		if r.IntN(3) > 0 || len(held) == 0 {
			x := r.IntN(100)
			h.Push(x)
			held = append(held, x)
			continue
		}
		least := slices.Min(held)
		if got := h.Pop(); got != least {
			t.Fatalf("popped %d, least held %d", got, least)
		}
		held = slices.Delete(held, slices.Index(held, least), slices.Index(held, least)+1)
	}
	if h.Len() != len(held) {
		t.Fatalf("Len %d, %d held", h.Len(), len(held))
	}
}
