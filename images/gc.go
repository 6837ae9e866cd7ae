package images

import (
	"cmp"
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// DefaultGCGrace is how old a blob that no image has must be before a
// collection deletes it, unless [Config.GCGrace] says otherwise. Such a
// blob may belong to an image another process is assembling; it only
// needs to outlast one image's assembly (a blob whose image was dropped
// goes at once).
const DefaultGCGrace = 10 * time.Minute

// gcInterval is how often the collector runs, besides after each build
// when a storage limit is set.
const gcInterval = time.Minute

// memberShare is the share of the storage limit left to the layer
// builder's cache (the compressed members of store paths, which make new
// layers of known store paths fast); the blobs get the rest.
const memberShare = 0.2

// CacheTrimmer is implemented by a [LayerBuilder] with a cache of its own,
// as package layers' Assembler is: a collection keeps that cache within
// its share of [Config.StorageLimit].
type CacheTrimmer interface {
	CacheSize() int64
	Trim(ctx context.Context, o layers.TrimOptions) (layers.Trimmed, error)
}

// PathDeleter is implemented by a [Nix] that can delete store paths, as
// package nix's Builder is; [Config.NixGC] uses it.
type PathDeleter interface {
	DeletePaths(ctx context.Context, paths []string) ([]string, error)
}

// GCStats is what one collection did.
type GCStats struct {
	Images      int   // image records dropped
	Blobs       int   // blobs deleted
	BlobBytes   int64 // bytes of those blobs
	Members     int   // entries removed from the layer builder's cache
	MemberBytes int64
	StorePaths  int   // store paths deleted from the Nix store (NixGC)
	Before      int64 // bytes of blobs, cache and index before
	After       int64 // and after
}

// gcState is the collector's own state.
type gcState struct {
	kick     chan struct{}
	mu       sync.Mutex
	pressure bool                  // a write failed for want of space
	orphans  map[v1.Hash]bool      // blobs of dropped images: no grace
	last     time.Time             // when the last collection started
	recent   atomic.Pointer[Image] // the image this process served last
}

// touch notes that img was requested now, here.
func (b *Builder) touch(img *Image) {
	img.touch()
	b.gc.recent.Store(img)
}

func (g *gcState) init() {
	g.kick = make(chan struct{}, 1)
	g.orphans = map[v1.Hash]bool{}
}

// kickGC asks the collector to run soon: after a build when a limit is
// set, or when the disk is full (pressure).
func (b *Builder) kickGC(pressure bool) {
	if pressure {
		b.gc.mu.Lock()
		b.gc.pressure = true
		b.gc.mu.Unlock()
	} else if b.cfg.StorageLimit == 0 {
		return
	}
	select {
	case b.gc.kick <- struct{}{}:
	default:
	}
}

// collectLoop collects every gcInterval and when kicked; first, when
// collectNow (a limit or a retention is set: New decides, before the loop
// starts, so that the loop never reads the configuration while a test
// changes it).
func (b *Builder) collectLoop(collectNow bool) {
	defer b.wg.Done()
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	if collectNow {
		b.kickGC(false)
	}
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		case <-b.gc.kick:
		}
		if _, err := b.Collect(b.ctx); err != nil && b.ctx.Err() == nil {
			b.log.Warn("garbage collection failed", "error", err)
		}
	}
}

// Collect runs one garbage collection; the Builder runs one every minute,
// after every build when [Config.StorageLimit] is set, and after a build
// that failed for want of disk space. Under the index's lock, which
// record saves take too (see [index]), it
//
//  1. loads the records other processes wrote, and forgets the images
//     whose records they removed; merges the last-requested times;
//  2. drops the records of the images not requested within
//     [Config.Retention], then of the least recently requested images
//     until the blobs of the others fit the limit (less the layer
//     builder's share and the blobs too young to delete); the image this
//     process served last is always kept. After a write failed for
//     want of space, the blobs (and below, the cache) are brought to 80%
//     of their size even without a limit;
//  3. deletes the blobs that no kept image has and that no image being
//     assembled or repaired in this process uses, if a dropped image had
//     them or they are older than [Config.GCGrace] (a blob another
//     process is assembling an image from is young; one it reused is
//     rebuilt by that process when it finds it gone after saving its
//     record, see keep).
//
// Then it trims the layer builder's cache ([CacheTrimmer]) to its share of
// the limit, store paths of kept images last, and, with [Config.NixGC],
// deletes the store paths of dropped images that no kept image has. A
// reader of a deleted blob reads on (see [layers.BlobStore]). Each
// collection that removed something logs what.
func (b *Builder) Collect(ctx context.Context) (GCStats, error) {
	var st GCStats
	if b.index.lock == nil {
		return st, nil
	}
	start := time.Now()
	b.gc.mu.Lock()
	pressure := b.gc.pressure
	b.gc.pressure = false
	b.gc.mu.Unlock()
	holder, err := b.takeLease(ctx)
	if err != nil {
		b.log.Warn("cannot take the garbage collection lease; collecting only this server's cache", "error", err)
	}
	var victims []*Image
	deleted := map[v1.Hash]bool{}
	err = b.index.lock.Do(ctx, func() error {
		var err error
		victims, err = b.collectLocked(ctx, holder, pressure, deleted, &st)
		return err
	})
	if err != nil {
		return st, err
	}
	kept := map[string]bool{}
	for _, img := range b.index.all() {
		for _, p := range img.storePaths() {
			kept[p] = true
		}
		for _, p := range img.outputs {
			kept[p.Path] = true
		}
	}
	if t, ok := b.cfg.Layers.(CacheTrimmer); ok {
		o := layers.TrimOptions{MaxBytes: -1, Keep: func(p string) bool { return kept[p] }}
		if len(deleted) > 0 {
			o.Gone = func(h v1.Hash) bool { return deleted[h] }
		}
		if b.cfg.StorageLimit > 0 {
			o.MaxBytes = int64(float64(b.cfg.StorageLimit) * memberShare)
		}
		if full := t.CacheSize() * 4 / 5; pressure && (o.MaxBytes < 0 || o.MaxBytes > full) {
			o.MaxBytes = full
		}
		tr, err := t.Trim(ctx, o)
		if err != nil {
			b.log.Warn("cannot trim the layer cache", "error", err)
		}
		st.Members, st.MemberBytes = tr.Members, tr.MemberBytes
		st.After -= tr.MemberBytes
	}
	if d, ok := b.cfg.Nix.(PathDeleter); ok && b.cfg.NixGC && len(victims) > 0 {
		var paths []string
		for _, v := range victims {
			for _, p := range append(v.storePaths(), pathsOf(v.outputs)...) {
				if !kept[p] && !slices.Contains(paths, p) {
					paths = append(paths, p)
				}
			}
		}
		gone, err := d.DeletePaths(ctx, paths)
		if err != nil {
			b.log.Warn("cannot delete store paths", "error", err)
		}
		st.StorePaths = len(gone)
	}
	if st.Images+st.Blobs+st.Members+st.StorePaths > 0 {
		b.log.LogAttrs(ctx, slog.LevelInfo, "garbage collection",
			slog.Int("images", st.Images), slog.Int("blobs", st.Blobs), slog.Int64("blob_bytes", st.BlobBytes),
			slog.Int("cache_entries", st.Members), slog.Int64("cache_bytes", st.MemberBytes),
			slog.Int("store_paths", st.StorePaths),
			slog.Int64("bytes_before", st.Before), slog.Int64("bytes_after", st.After),
			slog.Int64("limit", b.cfg.StorageLimit), slog.Bool("disk_full", pressure),
			slog.Duration("duration", time.Since(start).Round(time.Millisecond)))
	}
	return st, nil
}

func pathsOf(pkgs []nix.Package) []string {
	ps := make([]string, len(pkgs))
	for i, p := range pkgs {
		ps[i] = p.Path
	}
	return ps
}

// collectLocked is what Collect does under the lock: it returns the
// images it dropped and fills deleted with the blobs it deleted. A server
// that does not hold the lease of a shared store (see [StateStore]) only
// refreshes its records and publishes its last-requested times.
func (b *Builder) collectLocked(ctx context.Context, holder, pressure bool, deleted map[v1.Hash]bool, st *GCStats) ([]*Image, error) {
	_, present, missing, err := b.index.refresh(ctx)
	if err != nil {
		return nil, err
	}
	// Images whose records another process removed: dropped here too,
	// unless requested since the last collection (in use: the record is
	// saved again and what it lacks rebuilt).
	since := b.gc.last.UnixMilli()
	b.gc.last = time.Now()
	for _, img := range b.index.all() {
		b.index.mu.Lock()
		gone := img.saved && !present[img.Key]
		rec := b.index.recordLocked(img)
		b.index.mu.Unlock()
		switch {
		case !gone:
		case img.here.Load() >= since && b.index.save(rec) == nil:
			missing = append(missing, b.missingBlobs(ctx, img)...)
			b.log.Info("saved again an image record another process removed, as the image is in use", "key", img.Key)
		default:
			b.index.drop(img, "its record was removed by another process", true)
		}
	}
	b.repairAll(missing)
	if err := b.index.syncTimes(); err != nil {
		b.log.Warn("cannot save the last-requested times", "error", err)
	}
	if err := b.publishTimes(ctx); err != nil {
		b.log.Warn("cannot publish the last-requested times", "error", err)
	}
	if !holder {
		return nil, nil
	}
	if err := b.mergeTimes(ctx); err != nil {
		b.log.Warn("cannot read the other servers' last-requested times", "error", err)
	}
	floor, err := b.buildFloor(ctx)
	if err != nil {
		return nil, err
	}
	young := func(i layers.BlobInfo) bool {
		return !b.gc.orphans[i.Digest] && !i.ModTime.Before(floor)
	}
	var infos []layers.BlobInfo
	if err := b.cfg.Store.List(ctx, func(i layers.BlobInfo) error { infos = append(infos, i); return nil }); err != nil {
		return nil, err
	}
	var cache int64
	if t, ok := b.cfg.Layers.(CacheTrimmer); ok {
		cache = t.CacheSize()
	}
	indexBytes := b.index.diskBytes()
	var blobBytes int64
	for _, i := range infos {
		blobBytes += i.Size
	}
	st.Before = blobBytes + cache + indexBytes

	victims := b.victims(infos, blobBytes, b.hasTrimmer(), indexBytes, pressure, young)
	for _, v := range victims {
		if b.index.drop(v, v.dropReason, false) {
			st.Images++
			for h := range v.blobs() {
				b.gc.orphans[h] = true
			}
		}
	}
	marked := map[v1.Hash]bool{}
	for _, img := range b.index.all() {
		for h := range img.blobs() {
			marked[h] = true
		}
	}
	listed := map[v1.Hash]bool{}
	for _, i := range infos {
		listed[i.Digest] = true
		if marked[i.Digest] || b.inflight.has(i.Digest) {
			continue
		}
		if young(i) {
			continue
		}
		if err := b.cfg.Store.Delete(ctx, i.Digest); err != nil {
			b.log.Warn("cannot delete a blob", "digest", i.Digest, "error", err)
			continue
		}
		b.verifier.Forget(i.Digest)
		deleted[i.Digest] = true
		st.Blobs++
		st.BlobBytes += i.Size
	}
	for h := range b.gc.orphans {
		if !listed[h] || deleted[h] || marked[h] {
			delete(b.gc.orphans, h)
		}
	}
	st.After = st.Before - st.BlobBytes
	return victims, nil
}

func (b *Builder) hasTrimmer() bool {
	_, ok := b.cfg.Layers.(CacheTrimmer)
	return ok
}

// victims picks the images to drop (see Collect), setting their
// dropReason.
// young tells the blobs that no image has and that stay whatever is
// dropped.
func (b *Builder) victims(infos []layers.BlobInfo, blobBytes int64, trimmer bool, indexBytes int64, pressure bool, young func(layers.BlobInfo) bool) []*Image {
	imgs := b.index.all()
	// Most recently requested first; the image this process served last
	// before all (another process's more recent image may be newer, but a
	// pull from this process must not lose its image here).
	recent := b.gc.recent.Load()
	first := func(img *Image) int {
		if img == recent {
			return 0
		}
		return 1
	}
	slices.SortFunc(imgs, func(x, y *Image) int {
		return cmp.Or(cmp.Compare(first(x), first(y)), cmp.Compare(y.used.Load(), x.used.Load()), cmp.Compare(x.Key, y.Key))
	})
	var victims []*Image
	if r := b.cfg.Retention; r > 0 {
		cutoff := time.Now().Add(-r).UnixMilli()
		imgs = slices.DeleteFunc(imgs, func(img *Image) bool {
			if img.used.Load() < cutoff {
				img.dropReason = "not requested for " + r.String()
				victims = append(victims, img)
				return true
			}
			return false
		})
	}
	budget := int64(-1)
	if limit := b.cfg.StorageLimit; limit > 0 {
		budget = limit - indexBytes
		if trimmer {
			budget -= int64(float64(limit) * memberShare)
		}
	}
	if pressure && (budget < 0 || budget > blobBytes*4/5) {
		budget = blobBytes * 4 / 5
	}
	if budget < 0 {
		return victims
	}
	size := map[v1.Hash]int64{}
	owned := map[v1.Hash]bool{}
	for _, img := range b.index.all() {
		for h := range img.blobs() {
			owned[h] = true
		}
	}
	for _, i := range infos {
		size[i.Digest] = i.Size
		if !owned[i.Digest] && (b.inflight.has(i.Digest) || young(i)) {
			budget -= i.Size // stays whatever is dropped
		}
	}
	seen := map[v1.Hash]bool{}
	var total int64
	for n, img := range imgs {
		var add int64
		for h := range img.blobs() {
			if !seen[h] {
				add += size[h]
			}
		}
		if n > 0 && total+add > budget {
			for _, v := range imgs[n:] {
				v.dropReason = "least recently requested beyond the storage limit"
			}
			return append(victims, imgs[n:]...)
		}
		total += add
		for h := range img.blobs() {
			seen[h] = true
		}
	}
	return victims
}

// diskBytes returns the bytes of the index's files.
func (x *index) diskBytes() int64 {
	var n int64
	ents, _ := os.ReadDir(x.dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// inflight counts the uses of blobs by images being assembled or
// repaired in this process, which collections leave alone.
type inflight struct {
	mu sync.Mutex
	n  map[v1.Hash]int
}

func (f *inflight) add(h v1.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[v1.Hash]int{}
	}
	f.n[h]++
}

func (f *inflight) done(h v1.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[h]--; f.n[h] <= 0 {
		delete(f.n, h)
	}
}

// doneAll ends the uses of every blob of img.
func (f *inflight) doneAll(img *Image) {
	for h := range img.blobs() {
		f.done(h)
	}
}

func (f *inflight) has(h v1.Hash) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[h] > 0
}
