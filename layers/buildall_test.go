package layers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func fakeDescriptor(g []string) Descriptor {
	return Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", len(g[0]))}, Size: int64(len(g[0]))}
}

// TestBuildAllOrder: the descriptors come back in the groups' order
// whatever order the builds finish in, at most LayerParallelism run at
// once, and done sees each layer once.
func TestBuildAllOrder(t *testing.T) {
	var groups [][]string
	for i := range 9 {
		groups = append(groups, []string{fmt.Sprint(i, "-", string(make([]byte, i)))})
	}
	var running, peak atomic.Int32
	var mu sync.Mutex
	seen := map[int]bool{}
	ds, err := BuildAll(t.Context(), groups, func(ctx context.Context, g []string) (Descriptor, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Duration(10-len(g[0])%10) * time.Millisecond) // later groups finish sooner
		return fakeDescriptor(g), nil
	}, func(i int, d Descriptor) {
		mu.Lock()
		defer mu.Unlock()
		if seen[i] {
			t.Errorf("done called twice for %d", i)
		}
		seen[i] = true
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range groups {
		if ds[i] != fakeDescriptor(g) {
			t.Errorf("layer %d: %v, want %v", i, ds[i], fakeDescriptor(g))
		}
	}
	if len(seen) != len(groups) {
		t.Errorf("done saw %d layers", len(seen))
	}
	if p := peak.Load(); p > LayerParallelism || p < 2 {
		t.Errorf("%d builds at once, want 2..%d", p, LayerParallelism)
	}
}

// TestBuildAllError: the first error is returned, the builds under way
// are cancelled, and no build starts after it.
func TestBuildAllError(t *testing.T) {
	boom := errors.New("boom")
	var started atomic.Int32
	groups := [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}}
	_, err := BuildAll(t.Context(), groups, func(ctx context.Context, g []string) (Descriptor, error) {
		started.Add(1)
		if g[0] == "b" {
			return Descriptor{}, boom
		}
		<-ctx.Done() // a long build, cut by the cancellation
		return Descriptor{}, ctx.Err()
	}, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if n := started.Load(); n > 3 {
		t.Errorf("%d builds started after the error", n)
	}
}
