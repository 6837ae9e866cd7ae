// Package minheap is a typed binary min-heap: container/heap without its
// interface boxing, shared by the packages that order work by a key
// (closure's topological order, layers' merge candidates).
//
// The order of items that compare equal is not specified, so callers whose
// output must be deterministic give Less a total order (break ties on an
// index, say), or only push items that are interchangeable when equal.
package minheap

// Heap is a min-heap of T ordered by Less. The zero Heap is not usable:
// make one with New.
type Heap[T any] struct {
	items []T
	less  func(a, b T) bool
}

// New returns a heap of items (which it takes over and reorders) ordered
// by less.
func New[T any](less func(a, b T) bool, items ...T) *Heap[T] {
	h := &Heap[T]{items: items, less: less}
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	return h
}

// Len returns the number of items.
func (h *Heap[T]) Len() int { return len(h.items) }

// Push adds x.
func (h *Heap[T]) Push(x T) {
	h.items = append(h.items, x)
	for i := len(h.items) - 1; i > 0; {
		up := (i - 1) / 2
		if !h.less(h.items[i], h.items[up]) {
			break
		}
		h.items[i], h.items[up] = h.items[up], h.items[i]
		i = up
	}
}

// Pop removes and returns the least item. It panics on an empty heap.
func (h *Heap[T]) Pop() T {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	var zero T
	h.items[last] = zero
	h.items = h.items[:last]
	h.down(0)
	return top
}

func (h *Heap[T]) down(i int) {
	for n := len(h.items); ; {
		m := i
		if l := 2*i + 1; l < n && h.less(h.items[l], h.items[m]) {
			m = l
		}
		if r := 2*i + 2; r < n && h.less(h.items[r], h.items[m]) {
			m = r
		}
		if m == i {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
