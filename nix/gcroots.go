package nix

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/atomicfile"
)

// gcRoots are the GC roots of a Builder's results. A root keeps a result's
// closure in the Nix store while the result is in use, from the build until
// [Result.Release], and no longer: the store paths of images already built
// are then Nix's to collect (nixery keeps the layers).
//
// Each Builder (each process) has a directory of its own,
// GCRootDir/<id>/, held by an flock on GCRootDir/<id>.lock for the
// Builder's lifetime; each build gets GCRootDir/<id>/<n>/, where
// nix-store --add-root puts one indirect root per output. The first build
// of a Builder removes the directories whose lock nobody holds (their
// process died before releasing its roots) and roots of the earlier
// layout, which were never released.
type gcRoots struct {
	once sync.Once
	dir  string // GCRootDir/<id>
	err  error
	lock *atomicfile.Lock // held for the lifetime of the process
	seq  atomic.Int64
}

// add returns a new root path for a build, below dir; "" when dir is "".
func (g *gcRoots) add(dir, name string) (string, error) {
	if dir == "" {
		return "", nil
	}
	g.once.Do(func() { g.dir, g.lock, g.err = openRoots(dir) })
	if g.err != nil {
		return "", g.err
	}
	build := filepath.Join(g.dir, strconv.FormatInt(g.seq.Add(1), 10))
	if err := os.Mkdir(build, 0o755); err != nil {
		return "", fmt.Errorf("nix: GC root: %w", err)
	}
	return filepath.Join(build, name), nil
}

// openRoots makes this process's root directory in dir, locked, and removes
// the roots of dead processes.
func openRoots(dir string) (string, *atomicfile.Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("nix: GC root directory: %w", err)
	}
	removeStaleRoots(dir)
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	// Lock first, then make the directory: a directory whose lock is free
	// belongs to a dead process.
	lock := atomicfile.NewLock(filepath.Join(dir, id+".lock"))
	if ok, err := lock.TryLock(); !ok || err != nil {
		return "", nil, fmt.Errorf("nix: GC root lock: %v", err)
	}
	own := filepath.Join(dir, id)
	if err := os.Mkdir(own, 0o755); err != nil {
		lock.Unlock()
		return "", nil, fmt.Errorf("nix: GC root directory: %w", err)
	}
	return own, lock, nil
}

// removeStaleRoots removes from dir the roots of processes that died, and
// the roots of the earlier layout (symlinks in dir itself).
func removeStaleRoots(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			os.Remove(p)
		case e.IsDir():
			l := atomicfile.NewLock(p + ".lock")
			if ok, _ := l.TryLock(); ok {
				os.RemoveAll(p)
				os.Remove(p + ".lock")
				l.Unlock()
			}
		case strings.HasSuffix(e.Name(), ".lock"):
			if _, err := os.Lstat(strings.TrimSuffix(p, ".lock")); errors.Is(err, os.ErrNotExist) {
				l := atomicfile.NewLock(p)
				if ok, _ := l.TryLock(); ok {
					os.Remove(p)
					l.Unlock()
				}
			}
		}
	}
}

// releaseRoot removes the roots of one build (root's directory).
func releaseRoot(root string) {
	if root != "" {
		os.RemoveAll(filepath.Dir(root))
	}
}

// Release drops the GC root that keeps the result's closure in the Nix
// store (see [Options.GCRootDir]); the store paths are then Nix's to
// collect. Call it once the store paths have been read. It is safe to call
// more than once, and does nothing for a result without a root.
func (r *Result) Release() {
	if r != nil {
		releaseRoot(r.root)
		r.root = ""
	}
}

// DeletePaths deletes store paths from the Nix store with nix-store
// --delete, which refuses a path that is still alive (rooted, or
// referenced by a path that is kept), and returns the paths it deleted.
// Paths that are alive are kept, not an error: the caller names the paths
// it no longer needs, Nix knows who else does. Each path is tried on its
// own, in passes, until a pass deletes nothing more (a path referenced by
// another candidate goes once that one is gone).
func (b *Builder) DeletePaths(ctx context.Context, paths []string) ([]string, error) {
	left := slices.Clone(paths)
	var deleted []string
	for len(left) > 0 {
		var next []string
		for _, p := range left {
			if !closure.ValidStorePath(p) {
				return deleted, fmt.Errorf("nix: not a store path: %q", truncate(p, 200))
			}
			_, err := b.run(ctx, command{op: "gc", prog: "nix-store", args: []string{"--delete", p}, quiet: true})
			switch {
			case err == nil:
				deleted = append(deleted, p)
			case ctx.Err() != nil:
				return deleted, ctx.Err()
			default:
				next = append(next, p)
			}
		}
		if len(next) == len(left) {
			break
		}
		left = next
	}
	return deleted, nil
}
