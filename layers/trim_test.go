package layers

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestTrim: Trim keeps the member cache within its bound, removing the
// entries of store paths not kept first and the least recently used
// first; layer entries of deleted blobs go; layers build again after.
func TestTrim(t *testing.T) {
	ctx := context.Background()
	s := newFakeStore(t)
	a, store := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	paths := s.All()
	d, err := a.Layer(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	ms := a.members()
	if len(ms) != len(paths) {
		t.Fatalf("%d member entries for %d paths", len(ms), len(paths))
	}
	var total int64
	for _, m := range ms {
		total += m.size
	}
	if a.CacheSize() <= total {
		t.Errorf("CacheSize %d leaves out the layer entries (members %d)", a.CacheSize(), total)
	}
	// No bound: only layer entries of gone blobs are removed.
	tr, err := a.Trim(ctx, TrimOptions{MaxBytes: -1, Gone: func(h v1.Hash) bool { return h == d.Digest }})
	if err != nil || tr.Layers != 1 || tr.Members != 0 {
		t.Errorf("Trim of gone layers: %+v, %v", tr, err)
	}
	// Make one kept path's entry the oldest: it still goes last.
	kept := paths[0]
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(filepath.Join(a.memberDir, filepath.Base(kept)), old, old)
	tr, err = a.Trim(ctx, TrimOptions{MaxBytes: 1, Keep: func(p string) bool { return p == kept }})
	if err != nil || tr.Members != len(paths) || tr.MemberBytes != total {
		t.Errorf("Trim to 1 byte: %+v, %v", tr, err)
	}
	if a.CacheSize() != 0 {
		t.Errorf("CacheSize after trimming everything: %d", a.CacheSize())
	}
	// Rebuild: same layer.
	if err := store.Delete(ctx, d.Digest); err != nil {
		t.Fatal(err)
	}
	again, err := a.Layer(ctx, paths)
	if err != nil || again != d {
		t.Fatalf("rebuilt %+v, %v; want %+v", again, err, d)
	}
	// Keep order: with room for all but one entry, the one removed is the
	// oldest entry of a path not kept.
	ms = a.members()
	for i, m := range ms {
		at := time.Now().Add(-time.Duration(i+1) * time.Hour)
		os.Chtimes(m.path, at, at)
	}
	oldest := ms[len(ms)-1] // kept below
	oldestOther := ms[len(ms)-2]
	total = 0
	for _, m := range ms {
		total += m.size
	}
	tr, err = a.Trim(ctx, TrimOptions{MaxBytes: total - 1, Keep: func(p string) bool { return p == oldest.storePath }})
	if err != nil || tr.Members != 1 {
		t.Fatalf("Trim by one byte: %+v, %v", tr, err)
	}
	if _, err := os.Stat(oldestOther.path); !os.IsNotExist(err) {
		t.Errorf("the oldest entry of a path not kept is still there")
	}
	if _, err := os.Stat(oldest.path); err != nil {
		t.Errorf("the kept path's entry was removed: %v", err)
	}
}
