package layers

import (
	"cmp"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TrimOptions say what [Assembler.Trim] removes.
type TrimOptions struct {
	// MaxBytes bounds the member cache (every format's); negative means
	// no bound.
	MaxBytes int64
	// Keep, when set, reports the store paths whose members are removed
	// last: those of the layers still in use.
	Keep func(storePath string) bool
	// Gone, when set, reports blobs that were deleted: the layer cache
	// entries naming them are removed.
	Gone func(v1.Hash) bool
}

// Trimmed is what [Assembler.Trim] removed.
type Trimmed struct {
	Members     int // member cache entries
	MemberBytes int64
	Layers      int // layer cache entries
}

// touchAge is how stale a member entry's modification time may get before
// a use sets it to now: the time is what Trim orders entries by.
const touchAge = time.Hour

// memberFile is a member cache entry found by a walk.
type memberFile struct {
	path, storePath string
	size            int64
	mod             time.Time
}

// members lists the entries of every format's member cache.
func (a *Assembler) members() []memberFile {
	var ms []memberFile
	dirs, _ := os.ReadDir(filepath.Dir(a.memberDir))
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(filepath.Dir(a.memberDir), d.Name())
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			ms = append(ms, memberFile{path: filepath.Join(dir, e.Name()), storePath: "/nix/store/" + e.Name(), size: fi.Size(), mod: fi.ModTime()})
		}
	}
	return ms
}

// CacheSize returns the bytes of the Assembler's caches: the members of
// every format and the layer entries.
func (a *Assembler) CacheSize() int64 {
	var n int64
	for _, m := range a.members() {
		n += m.size
	}
	ents, _ := os.ReadDir(a.layerDir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Trim removes member cache entries until the member cache holds at most
// o.MaxBytes: first those of store paths o.Keep does not report, then the
// others, each time the least recently used first (an entry's
// modification time is set when a layer uses it, at most once an hour).
// It also removes the layer cache entries of the blobs o.Gone reports.
// Entries being written are never touched, and a build reading an entry
// that Trim removes reads on; one that finds it gone compresses the store
// path again.
func (a *Assembler) Trim(ctx context.Context, o TrimOptions) (Trimmed, error) {
	var t Trimmed
	if o.Gone != nil {
		ents, err := os.ReadDir(a.layerDir)
		if err != nil {
			return t, err
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			name := filepath.Join(a.layerDir, e.Name())
			b, err := os.ReadFile(name)
			if err != nil {
				continue
			}
			var le layerEntry
			if json.Unmarshal(b, &le) != nil {
				continue // removed when next used
			}
			if h, err := ParseDigest(le.Digest); err == nil && o.Gone(h) && os.Remove(name) == nil {
				t.Layers++
			}
		}
	}
	if o.MaxBytes < 0 {
		return t, nil
	}
	ms := a.members()
	var total int64
	for _, m := range ms {
		total += m.size
	}
	keep := func(m memberFile) bool { return o.Keep != nil && o.Keep(m.storePath) }
	slices.SortFunc(ms, func(x, y memberFile) int {
		kx, ky := keep(x), keep(y)
		if kx != ky {
			if kx {
				return 1
			}
			return -1
		}
		return cmp.Or(x.mod.Compare(y.mod), cmp.Compare(x.path, y.path))
	})
	for _, m := range ms {
		if total <= o.MaxBytes {
			break
		}
		if err := ctx.Err(); err != nil {
			return t, err
		}
		if os.Remove(m.path) == nil {
			total -= m.size
			t.Members++
			t.MemberBytes += m.size
		}
	}
	return t, nil
}
