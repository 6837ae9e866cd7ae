package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/atomicfile"
	"github.com/nixery-go/nixery/internal/flight"
)

// ErrNoPaths is returned by [Assembler.Layer] for an empty set of store
// paths.
var ErrNoPaths = errors.New("layers: no store paths")

// ErrInvalidStorePath is returned (wrapped) for a string that is not a store
// path, /nix/store/<hash>-<name>.
var ErrInvalidStorePath = errors.New("layers: invalid store path")

// Options configure an [Assembler]. The zero value gives the defaults.
type Options struct {
	// Level is the gzip level, 1 to 9; 0 means DefaultLevel.
	Level int
	// ChunkSize is the number of uncompressed bytes of a store path per
	// gzip member; 0 means DefaultChunkSize. It must be a multiple of
	// 512 (a tar block).
	ChunkSize int
	// Workers is the number of goroutines compressing chunks; 0 means
	// runtime.GOMAXPROCS(0). It does not change the output.
	Workers int
	// Root is the directory below which /nix/store lives; "" means "/".
	// Tests and benchmarks use a temporary directory holding fake store
	// paths.
	Root string
	// Logger receives a line for each layer built; nil means
	// slog.Default().
	Logger *slog.Logger
}

// pathStats are the sizes of one store path's part of a layer.
type pathStats struct {
	tarSize  int64 // bytes of the path's tar entries
	compSize int64 // bytes of the path's gzip members
}

// Assembler builds layers from store paths into a [BlobStore], caching the
// compressed members of every store path and the descriptor of every layer
// in a cache directory:
//
//	cacheDir/members/<format>/<hash>-<name>   members of one store path
//	cacheDir/layers/<key>.json                 descriptor of one layer
//	cacheDir/tmp/                              entries being written
//
// An Assembler is safe for concurrent use; several Assemblers (and
// processes) may share a cache directory.
type Assembler struct {
	store     BlobStore
	opts      Options
	log       *slog.Logger
	format    string
	memberDir string
	layerDir  string
	tmpDir    string

	headerMember, trailerMember []byte

	flight flight.Group[Descriptor] // one build per layer key

	mu     sync.Mutex
	claims map[string]chan struct{} // member entry name -> closed when built

	compressed atomic.Int64 // chunks compressed, for tests

	stats struct {
		layerHits, layerMisses, memberHits, memberMisses, blobBytes, tarBytes atomic.Int64
	}
}

// Stats are an Assembler's counters since it was made.
type Stats struct {
	// LayerHits counts the layers found in the layer cache, LayerMisses
	// those built (a build that concurrent callers share counts once).
	LayerHits, LayerMisses int64
	// MemberHits counts the store paths whose compressed members came
	// from the member cache, MemberMisses those compressed.
	MemberHits, MemberMisses int64
	// BlobBytes counts the compressed bytes of the layers built, TarBytes
	// their uncompressed tar bytes.
	BlobBytes, TarBytes int64
}

// Stats returns the Assembler's counters.
func (a *Assembler) Stats() Stats {
	s := &a.stats
	return Stats{
		LayerHits: s.layerHits.Load(), LayerMisses: s.layerMisses.Load(),
		MemberHits: s.memberHits.Load(), MemberMisses: s.memberMisses.Load(),
		BlobBytes: s.blobBytes.Load(), TarBytes: s.tarBytes.Load(),
	}
}

// NewAssembler returns an Assembler writing layers to store and caching in
// cacheDir.
func NewAssembler(store BlobStore, cacheDir string, opts Options) (*Assembler, error) {
	if opts.Level == 0 {
		opts.Level = DefaultLevel
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize < tarBlock || opts.ChunkSize%tarBlock != 0 {
		return nil, fmt.Errorf("layers: chunk size %d is not a positive multiple of %d", opts.ChunkSize, tarBlock)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Root == "" {
		opts.Root = "/"
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("layers: root: %w", err)
	}
	opts.Root = root
	c, err := newCompressor(opts.Level)
	if err != nil {
		return nil, err
	}
	a := &Assembler{
		store:     store,
		opts:      opts,
		log:       opts.Logger,
		format:    formatID(opts.Level, opts.ChunkSize),
		layerDir:  filepath.Join(cacheDir, "layers"),
		tmpDir:    filepath.Join(cacheDir, "tmp"),
		claims:    make(map[string]chan struct{}),
		memberDir: memberDirName(cacheDir, formatID(opts.Level, opts.ChunkSize)),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	for _, d := range []string{a.memberDir, a.layerDir, a.tmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("layers: cache: %w", err)
		}
	}
	atomicfile.RemoveStale(a.tmpDir, "member-")
	atomicfile.RemoveStale(a.layerDir, atomicfile.TempPrefix)
	var buf bytes.Buffer
	if err := c.member(&buf, storeHeaderTar); err != nil {
		return nil, err
	}
	a.headerMember = bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := c.member(&buf, storeTrailerTar); err != nil {
		return nil, err
	}
	a.trailerMember = bytes.Clone(buf.Bytes())
	return a, nil
}

// Format returns the format ID of the layers a builds, which names
// FormatVersion, the compressor and its settings. Layers from Assemblers
// with the same format ID are byte-identical.
func (a *Assembler) Format() string { return a.format }

// normalise validates store paths and returns them sorted without
// duplicates.
func normalise(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, ErrNoPaths
	}
	set := slices.Clone(paths)
	for _, p := range set {
		if !closure.ValidStorePath(p) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidStorePath, truncate(p))
		}
	}
	slices.Sort(set)
	return slices.Compact(set), nil
}

func (a *Assembler) memberName(storePath string) string {
	return filepath.Join(a.memberDir, filepath.Base(storePath))
}

// Layer returns the layer holding the given store paths, building it into
// the blob store unless the layer cache already has it. The order of paths
// and duplicates do not matter. Concurrent calls for the same set build it
// once; a build that has started carries on if its callers give up, so that
// its result is cached.
func (a *Assembler) Layer(ctx context.Context, paths []string) (Descriptor, error) {
	d, _, err := a.CachedLayer(ctx, paths)
	return d, err
}

// CachedLayer is [Assembler.Layer] that also reports whether the layer
// came from the layer cache.
func (a *Assembler) CachedLayer(ctx context.Context, paths []string) (Descriptor, bool, error) {
	set, err := normalise(paths)
	if err != nil {
		return Descriptor{}, false, err
	}
	key := layerKey(a.format, set)
	entry := filepath.Join(a.layerDir, key+".json")
	if d, ok := a.cachedLayer(ctx, entry, set); ok {
		a.stats.layerHits.Add(1)
		return d, true, nil
	}
	// A build that has started carries on when its callers give up
	// (WithoutCancel), so that its result is cached.
	d, err := a.flight.Do(ctx, key, func(ctx context.Context) (Descriptor, error) {
		ctx = context.WithoutCancel(ctx)
		if d, ok := a.cachedLayer(ctx, entry, set); ok {
			return d, nil
		}
		a.stats.layerMisses.Add(1)
		d, err := a.buildLayer(ctx, set)
		if err != nil {
			return Descriptor{}, err
		}
		if err := writeLayerEntry(entry, a.format, set, d); err != nil {
			a.log.Warn("layer cache write failed", "digest", d.Digest, "err", err)
		}
		return d, nil
	})
	return d, false, err
}

// cachedLayer looks up a layer cache entry and checks that the blob it names
// is in the store with the recorded size. A damaged entry is removed.
func (a *Assembler) cachedLayer(ctx context.Context, entry string, set []string) (Descriptor, bool) {
	d, err := readLayerEntry(entry, a.format, set)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("removing damaged layer cache entry", "entry", entry, "err", err)
			os.Remove(entry)
		}
		return Descriptor{}, false
	}
	if n, err := a.store.Stat(ctx, d.Digest); err != nil || n != d.Size {
		a.log.Warn("layer cache entry names a missing blob; rebuilding", "digest", d.Digest, "size", d.Size, "stat", n, "err", err)
		os.Remove(entry)
		return Descriptor{}, false
	}
	return d, true
}

// maxAttempts bounds the builds of one layer when cache entries turn out to
// be damaged (each attempt removes the ones it found).
const maxAttempts = 3

// errRetry marks a build that failed because of a cache entry; the entry
// has been dealt with and the build can be retried.
var errRetry = errors.New("layers: cache entry unusable")

func (a *Assembler) buildLayer(ctx context.Context, set []string) (Descriptor, error) {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		var d Descriptor
		d, err = a.buildOnce(ctx, set)
		if !errors.Is(err, errRetry) {
			return d, err
		}
		a.log.Warn("rebuilding layer without a damaged cache entry", "attempt", attempt, "err", err)
	}
	return Descriptor{}, err
}

// Digester is implemented by BlobWriters that hash what they are given
// with sha256: Digest returns the digest of the bytes written so far, so
// the assembler need not hash the blob a second time.
type Digester interface {
	Digest() v1.Hash
}

// Digest returns the sha256 digest of the bytes written so far.
func (w *fsBlobWriter) Digest() v1.Hash { return hashOf(w.h) }

func (a *Assembler) buildOnce(ctx context.Context, set []string) (Descriptor, error) {
	start := time.Now()
	bw, err := a.store.Create(ctx)
	if err != nil {
		return Descriptor{}, err
	}
	cw := &countWriter{w: bw}
	var out io.Writer = cw
	var dh hash.Hash
	dg, ok := bw.(Digester)
	if !ok {
		dh = sha256.New()
		out = io.MultiWriter(cw, dh)
	}
	res, err := a.run(ctx, set, out)
	if err != nil {
		bw.Cancel()
		return Descriptor{}, err
	}
	d := Descriptor{DiffID: res.diffID, Size: cw.n}
	if ok {
		d.Digest = dg.Digest()
	} else {
		d.Digest = hashOf(dh)
	}
	if err := bw.Commit(d.Digest); err != nil {
		return Descriptor{}, err
	}
	dur := time.Since(start)
	a.stats.memberHits.Add(int64(res.cached))
	a.stats.memberMisses.Add(int64(res.built))
	a.stats.blobBytes.Add(d.Size)
	a.stats.tarBytes.Add(res.tarSize)
	a.log.Info("layer built", "digest", d.Digest.String(), "paths", len(set),
		"tar_bytes", res.tarSize, "blob_bytes", d.Size,
		"members_cached", res.cached, "members_compressed", res.built,
		"duration", dur.Round(time.Millisecond),
		"mb_per_s", int(float64(res.tarSize)/dur.Seconds()/1e6))
	return d, nil
}

// claim marks the member cache entry name as being built by the caller, and
// returns true and the claim, which the caller must pass to release. If
// another build holds it, claim returns false and a channel closed when that
// build ends. claim also returns false, with a closed channel, if the entry
// has appeared in the meantime.
func (a *Assembler) claim(name string) (bool, chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.claims[name]; ok {
		return false, c
	}
	if _, err := os.Stat(name); err == nil {
		c := make(chan struct{})
		close(c)
		return false, c
	}
	c := make(chan struct{})
	a.claims[name] = c
	return true, c
}

// release ends the claim c on name, if it still holds.
func (a *Assembler) release(name string, c chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.claims[name] == c {
		close(c)
		delete(a.claims, name)
	}
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
