package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/atomicfile"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// index is the one cache of built images. It finds an image by its key, by
// the digest of one of its blobs, and by the request that asked for it
// (for pinned sources, whose requests always give the same image), and
// keeps a record of every image in a directory so that it survives a
// restart:
//
//	dir/<key>.json        the record of one image (see record)
//	dir/.last-requested   when each image was last requested (see times)
//	dir/.gc.lock          the lock of record saves and garbage collections
//
// The manifests and configs themselves are blobs in the store. Several
// processes may share the directory: each loads the records the others
// write when it next collects garbage (refresh), and records are saved,
// and blobs deleted, only under dir/.gc.lock, so that a collector never
// deletes a blob between another process's reading of the records and its
// saving of one (see [Builder.Collect]).
type index struct {
	dir    string // "" keeps the index in memory only
	store  layers.BlobStore
	shared RecordStore // nil: records are local only
	log    *slog.Logger
	lock   *atomicfile.Lock // nil without dir

	// memo maps a name and tag as requested to the image of a pinned
	// source: the lean path for cached manifests, one map lookup.
	memoMu sync.RWMutex
	memo   map[memoKey]*Image
	// multi maps a name and tag to its image indexes (pinned sources).
	multi indexMemo

	mu        sync.Mutex
	byKey     map[string]*Image
	byRequest map[string]string    // request key -> image key (pinned sources)
	blobs     map[v1.Hash]*blobUse // every blob of every image
	// byPaths maps the store paths of a layer of an image (pathsKey) to
	// it: every image's layers, whichever process built it, are a cache
	// of layers by their store paths (see layerFor).
	byPaths   map[string]layers.Descriptor
	blobBytes atomic.Int64 // the sizes of blobs, added up
	requests  map[string][]string
}

// blobUse is what the index knows of one blob: its size and the images
// that have it.
type blobUse struct {
	size   int64
	images []*Image
}

type memoKey struct{ name, tag string }

// maxMemo bounds the names remembered for the lean path.
const maxMemo = 1 << 16

// maxRequestsPerImage bounds the request keys a record keeps: the
// spellings of one image that were asked for.
const maxRequestsPerImage = 16

// maxManifestBytes bounds a manifest read back from the store.
const maxManifestBytes = 4 << 20

func newIndex(dir string, store layers.BlobStore, log *slog.Logger) *index {
	x := &index{
		dir:       dir,
		store:     store,
		log:       log,
		memo:      map[memoKey]*Image{},
		byKey:     map[string]*Image{},
		byRequest: map[string]string{},
		blobs:     map[v1.Hash]*blobUse{},
		byPaths:   map[string]layers.Descriptor{},
		requests:  map[string][]string{},
	}
	if dir != "" {
		x.lock = atomicfile.NewLock(filepath.Join(dir, ".gc.lock"))
	}
	x.shared, _ = store.(RecordStore)
	return x
}

// record is an image as persisted in dir/<key>.json.
type record struct {
	Key      string   `json:"key"`
	Packages []string `json:"packages"`
	System   string   `json:"system"`
	// Requests are the keys of the requests (the spellings of the image's
	// name at a pinned source) that gave this image.
	Requests  []string        `json:"requests,omitempty"`
	Config    v1.Descriptor   `json:"config"`
	Manifests []v1.Descriptor `json:"manifests"`
	// What it takes to rebuild a damaged layer, and what a collector
	// marks: the tag, each layer with its store paths (none for the
	// customisation layer, the last), and the store path each of Packages
	// resolved to. Records written before these were kept lack them;
	// their damaged layers cannot be rebuilt, and they are dropped.
	Tag     string        `json:"tag,omitempty"`
	Layers  []recordLayer `json:"layers,omitempty"`
	Outputs []string      `json:"outputs,omitempty"`
	// Annotations are the manifests' annotations, and SBOMs the image's
	// SBOM documents (the artifact manifests follow from them and the
	// manifests). Records written before them lack them.
	Annotations map[string]string `json:"annotations,omitempty"`
	SBOMs       []v1.Descriptor   `json:"sboms,omitempty"`
	// Indexes are the image indexes that have the image as a member,
	// bytes included (they are small and made of the members' manifests).
	Indexes []v1.Descriptor `json:"indexes,omitempty"`
}

// maxIndexesPerImage bounds the indexes a record keeps.
const maxIndexesPerImage = 8

// recordLayer is one layer of a record.
type recordLayer struct {
	Digest v1.Hash  `json:"digest"`
	Size   int64    `json:"size"`
	Paths  []string `json:"paths,omitempty"`
}

// memoized returns the image remembered for name at tag.
func (x *index) memoized(name, tag string) *Image {
	x.memoMu.RLock()
	defer x.memoMu.RUnlock()
	return x.memo[memoKey{name, tag}]
}

// memoize remembers img for name at tag, while there is room.
func (x *index) memoize(name, tag string, img *Image) {
	x.memoMu.Lock()
	defer x.memoMu.Unlock()
	if len(x.memo) < maxMemo {
		x.memo[memoKey{name, tag}] = img
	}
}

// get returns the image with key, if built.
func (x *index) get(key string) *Image {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byKey[key]
}

// forRequest returns the image a pinned request key gave before.
func (x *index) forRequest(rk string) *Image {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byKey[x.byRequest[rk]]
}

// manifest returns the manifest with digest h and its image.
func (x *index) manifest(h v1.Hash) (v1.Descriptor, *Image) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if u := x.blobs[h]; u != nil {
		for _, img := range u.images {
			for _, m := range img.manifests {
				if m.Digest == h {
					return m, img
				}
			}
			for _, r := range img.referrers {
				if r.desc.Digest == h {
					return r.desc, img
				}
			}
			for _, m := range img.indexList() {
				if m.Digest == h {
					return m, img
				}
			}
		}
	}
	return v1.Descriptor{}, nil
}

// referrers returns the manifests whose subject is the manifest h.
func (x *index) referrers(h v1.Hash) []v1.Descriptor {
	x.mu.Lock()
	defer x.mu.Unlock()
	if u := x.blobs[h]; u != nil {
		for _, img := range u.images {
			if rs := img.Referrers(h); rs != nil {
				return rs
			}
		}
	}
	return nil
}

// addIndexes records that img is a member of the indexes ds (stored
// already), and saves its record if that is news.
func (x *index) addIndexes(ctx context.Context, img *Image, ds []v1.Descriptor) error {
	if x.lock != nil {
		if err := x.lock.Lock(ctx); err != nil {
			return err
		}
		defer x.lock.Unlock()
	}
	x.mu.Lock()
	have := img.indexList()
	list := slices.Clone(have)
	for _, d := range ds {
		if !slices.ContainsFunc(list, func(o v1.Descriptor) bool { return o.Digest == d.Digest }) {
			list = append(list, d)
		}
	}
	if len(list) == len(have) {
		x.mu.Unlock()
		return nil
	}
	if len(list) > maxIndexesPerImage {
		list = list[len(list)-maxIndexesPerImage:]
	}
	if x.byKey[img.Key] == img {
		for _, d := range list {
			u := x.blobs[d.Digest]
			if u == nil {
				u = &blobUse{size: d.Size}
				x.blobs[d.Digest] = u
			}
			if !slices.Contains(u.images, img) {
				u.images = append(u.images, img)
			}
		}
	}
	img.indexes.Store(&list)
	rec := x.recordLocked(img)
	saved := img.saved
	x.mu.Unlock()
	if x.dir == "" || !saved {
		return nil
	}
	return x.save(rec)
}

// blobSize returns the size recorded for a blob.
func (x *index) blobSize(h v1.Hash) (int64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if u := x.blobs[h]; u != nil {
		return u.size, true
	}
	return 0, false
}

// owners returns the images that have the blob h.
func (x *index) owners(h v1.Hash) []*Image {
	x.mu.Lock()
	defer x.mu.Unlock()
	if u := x.blobs[h]; u != nil {
		return slices.Clone(u.images)
	}
	return nil
}

// layerFor returns a layer of an image of the index that holds exactly
// the store paths paths (sorted, as layers.Group gives them), if any: the
// layer cache that every process on a shared store derives from the
// records, so that a process with an empty disk reuses the layers other
// processes built rather than compressing them again.
func (x *index) layerFor(paths []string) (layers.Descriptor, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	d, ok := x.byPaths[pathsKey(paths)]
	return d, ok
}

// pathsKey is the key of a layer's store paths in byPaths.
func pathsKey(paths []string) string { return strings.Join(paths, "\x00") }

// all returns every image of the index.
func (x *index) all() []*Image {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Collect(maps.Values(x.byKey))
}

// enterLocked puts img in the maps, unless an image with its key is there.
func (x *index) enterLocked(img *Image) *Image {
	if known := x.byKey[img.Key]; known != nil {
		return known
	}
	x.byKey[img.Key] = img
	for h, n := range img.blobs() {
		u := x.blobs[h]
		if u == nil {
			u = &blobUse{size: n}
			x.blobs[h] = u
			x.blobBytes.Add(n)
		}
		u.images = append(u.images, img)
	}
	for i, g := range img.groups {
		if i < len(img.layers)-1 { // the last is the customisation layer
			x.byPaths[pathsKey(g)] = img.layers[i]
		}
	}
	return img
}

// add enters img, asked for by the request key rk (empty for requests that
// cannot be cached by request: unpinned sources), and saves its record,
// under the collectors' lock (see [Builder.Collect]).
func (x *index) add(ctx context.Context, img *Image, rk string) error {
	if x.lock != nil {
		if err := x.lock.Lock(ctx); err != nil {
			return err
		}
		defer x.lock.Unlock()
	}
	x.mu.Lock()
	known := x.byKey[img.Key]
	if known == nil {
		x.enterLocked(img)
	}
	changed := known == nil || !img.saved
	if rk != "" && x.byRequest[rk] != img.Key {
		x.byRequest[rk] = img.Key
		reqs := append(x.requests[img.Key], rk)
		if len(reqs) > maxRequestsPerImage {
			reqs = reqs[len(reqs)-maxRequestsPerImage:]
		}
		x.requests[img.Key] = reqs
		changed = true
	}
	rec := x.recordLocked(img)
	x.mu.Unlock()
	if !changed || x.dir == "" {
		return nil
	}
	if err := x.save(rec); err != nil {
		return err
	}
	x.mu.Lock()
	img.saved = true
	x.mu.Unlock()
	return nil
}

func (x *index) recordLocked(img *Image) *record {
	rec := &record{
		Key:       img.Key,
		Packages:  img.Packages,
		System:    img.System,
		Requests:  slices.Clone(x.requests[img.Key]),
		Config:    img.configDescriptor(),
		Manifests: withoutData(img.manifests),
		Tag:       img.tag,
		Indexes:   img.indexList(),

		Annotations: img.annotations,
	}
	if img.referrers != nil {
		rec.SBOMs = withoutData(img.sboms)
	}
	if img.groups != nil {
		for i, l := range img.layers {
			rl := recordLayer{Digest: l.Digest, Size: l.Size}
			if i < len(img.groups) {
				rl.Paths = img.groups[i]
			}
			rec.Layers = append(rec.Layers, rl)
		}
	}
	for _, p := range img.outputs {
		rec.Outputs = append(rec.Outputs, p.Path)
	}
	return rec
}

func withoutData(ds []v1.Descriptor) []v1.Descriptor {
	out := make([]v1.Descriptor, len(ds))
	for i, d := range ds {
		d.Data = nil
		out[i] = d
	}
	return out
}

// save writes rec atomically.
func (x *index) save(rec *record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if x.shared != nil {
		if err := x.shared.PutRecord(context.Background(), rec.Key, b); err != nil {
			return err
		}
	}
	return atomicfile.Write(x.recordFile(rec.Key), b)
}

func (x *index) recordFile(key string) string { return filepath.Join(x.dir, key+".json") }

// drop takes img out of the index and removes its record, and reports
// whether it was there. keepFile leaves the record file alone (another
// process removed it, or will).
func (x *index) drop(img *Image, reason string, keepFile bool) bool {
	x.mu.Lock()
	if x.byKey[img.Key] != img {
		x.mu.Unlock()
		return false
	}
	delete(x.byKey, img.Key)
	for _, rk := range x.requests[img.Key] {
		if x.byRequest[rk] == img.Key {
			delete(x.byRequest, rk)
		}
	}
	delete(x.requests, img.Key)
	for h := range img.blobs() {
		if u := x.blobs[h]; u != nil {
			u.images = slices.DeleteFunc(u.images, func(o *Image) bool { return o == img })
			if len(u.images) == 0 {
				delete(x.blobs, h)
				x.blobBytes.Add(-u.size)
			}
		}
	}
	for _, g := range img.groups {
		k := pathsKey(g)
		if d, ok := x.byPaths[k]; ok && x.blobs[d.Digest] == nil {
			delete(x.byPaths, k)
		}
	}
	saved := img.saved
	x.mu.Unlock()
	x.memoMu.Lock()
	maps.DeleteFunc(x.memo, func(_ memoKey, v *Image) bool { return v == img })
	x.memoMu.Unlock()
	x.multi.forget(img)
	if saved && !keepFile && x.dir != "" {
		if x.shared != nil {
			if err := x.shared.DeleteRecord(context.Background(), img.Key); err != nil {
				x.log.Warn("cannot remove a shared image record", "key", img.Key, "error", err)
			}
		}
		if err := os.Remove(x.recordFile(img.Key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			x.log.Warn("cannot remove an image record", "key", img.Key, "error", err)
		}
	}
	x.log.Info("dropped image", "key", img.Key, "packages", img.Packages, "reason", reason)
	return true
}

// isRecordName reports whether name is the file of a record: the key (64
// hex digits) and ".json".
func isRecordName(name string) (string, bool) {
	key, ok := strings.CutSuffix(name, ".json")
	return key, ok && layers.ValidateDigest(v1.Hash{Algorithm: "sha256", Hex: key}) == nil
}

// load reads every record in the directory (see refresh) and the
// last-requested times, and returns the blobs that records name but the
// store lacks, for the caller to rebuild.
func (x *index) load(ctx context.Context) ([]v1.Hash, error) {
	if x.dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(x.dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: index: %w", err)
	}
	if n, _ := atomicfile.RemoveStale(x.dir, atomicfile.TempPrefix); n > 0 {
		x.log.Info("removed temporary files left by an earlier process", "dir", x.dir, "files", n)
	}
	if err := x.sync(ctx, true); err != nil {
		return nil, fmt.Errorf("images: shared index: %w", err)
	}
	loaded, _, missing, err := x.refresh(ctx)
	if err != nil {
		return nil, err
	}
	times := x.readTimes()
	for _, img := range x.all() {
		if t, ok := times[img.Key]; ok && t > img.used.Load() {
			img.used.Store(t)
		}
	}
	if loaded > 0 {
		x.log.Info("loaded image index", "images", loaded, "dir", x.dir)
	}
	return missing, nil
}

// refresh loads the records of the directory that are not in the index
// (all of them at start; later, those another process wrote). A record
// that is damaged (unreadable, or its manifest or config missing or
// damaged) is removed: its image is built again when asked for. A layer
// blob that is missing, or has another size than recorded (it is
// quarantined), is returned for the caller to rebuild; a record whose
// missing layer cannot be rebuilt (written before store paths were kept)
// is removed. It also returns the keys of every record in the directory.
func (x *index) refresh(ctx context.Context) (loaded int, present map[string]bool, missing []v1.Hash, err error) {
	if err := x.sync(ctx, false); err != nil {
		x.log.Warn("cannot read the shared image index", "error", err)
	}
	ents, err := os.ReadDir(x.dir)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("images: index: %w", err)
	}
	present = map[string]bool{}
	for _, e := range ents {
		key, ok := isRecordName(e.Name())
		if !ok {
			continue
		}
		present[key] = true
		if x.get(key) != nil {
			continue
		}
		file := filepath.Join(x.dir, e.Name())
		img, rec, lost, err := x.loadRecord(ctx, file)
		if errors.Is(err, errDamagedRecord) {
			x.log.Warn("dropping damaged image record", "file", e.Name(), "error", err)
			os.Remove(file)
			delete(present, key)
			continue
		}
		if err != nil {
			x.log.Warn("skipping image record", "file", e.Name(), "error", err)
			continue
		}
		if fi, err := e.Info(); err == nil {
			img.used.Store(fi.ModTime().UnixMilli())
		}
		img.saved = true
		x.mu.Lock()
		if x.enterLocked(img) == img {
			for _, rk := range rec.Requests {
				x.byRequest[rk] = img.Key
			}
			x.requests[img.Key] = rec.Requests
			loaded++
			missing = append(missing, lost...)
		}
		x.mu.Unlock()
	}
	return loaded, present, missing, nil
}

// errDamagedRecord marks a record that cannot be trusted and is removed.
var errDamagedRecord = errors.New("damaged record")

func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errDamagedRecord, fmt.Sprintf(format, args...))
}

// loadRecord reads a record and checks it against the store: its Docker
// manifest and config must be there and agree with it; a missing OCI
// manifest is written again from them; layers that are missing, or have
// another size than recorded (quarantined here), are returned. Errors
// about the record's contents wrap errDamagedRecord; others (the store
// failing) do not.
func (x *index) loadRecord(ctx context.Context, file string) (*Image, *record, []v1.Hash, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, nil, nil, damaged("%v", err)
	}
	if rec.Key+".json" != filepath.Base(file) || len(rec.Manifests) != int(numFormats) {
		return nil, nil, nil, damaged("malformed record")
	}
	if rec.Manifests[formatDocker].MediaType != MediaTypeDockerManifest {
		return nil, nil, nil, damaged("first manifest is a %s", rec.Manifests[formatDocker].MediaType)
	}
	manifest, err := x.readBlob(ctx, rec.Manifests[formatDocker])
	if err != nil {
		return nil, nil, nil, x.blobError(err)
	}
	config, err := x.readBlob(ctx, rec.Config)
	if err != nil {
		return nil, nil, nil, x.blobError(err)
	}
	img, err := imageFromBlobs(rec.Key, rec.Packages, rec.System, manifest, config, rec.Annotations)
	if err != nil {
		return nil, nil, nil, damaged("%v", err)
	}
	if len(rec.SBOMs) > 0 {
		docs := make([]v1.Descriptor, len(rec.SBOMs))
		for i, d := range rec.SBOMs {
			if d.MediaType != MediaTypeSPDX && d.MediaType != MediaTypeCycloneDX {
				return nil, nil, nil, damaged("an SBOM of type %q", d.MediaType)
			}
			body, err := x.readBlob(ctx, d)
			if err != nil {
				return nil, nil, nil, x.blobError(err)
			}
			d.Data = body
			docs[i] = d
		}
		if err := img.attachSBOMs(docs); err != nil {
			return nil, nil, nil, damaged("%v", err)
		}
		for _, body := range img.artifactBlobs() {
			d := manifestDescriptor("", body)
			if n, err := x.store.Stat(ctx, d.Digest); err != nil || n != d.Size {
				if _, err := layers.Put(ctx, x.store, body); err != nil {
					return nil, nil, nil, err
				}
				x.log.Warn("rewrote a missing or damaged SBOM manifest", "digest", d.Digest, "key", img.Key)
			}
		}
	}
	if err := rec.attach(img); err != nil {
		return nil, nil, nil, damaged("%v", err)
	}
	for f, m := range img.manifests {
		if m.Digest != rec.Manifests[f].Digest {
			return nil, nil, nil, damaged("manifest %d is %s, recorded %s", f, m.Digest, rec.Manifests[f].Digest)
		}
		if n, err := x.store.Stat(ctx, m.Digest); err != nil || n != m.Size {
			if _, err := layers.Put(ctx, x.store, m.Data); err != nil {
				return nil, nil, nil, err
			}
			x.log.Warn("rewrote a missing or damaged manifest", "digest", m.Digest, "key", img.Key)
		}
	}
	for _, d := range rec.Indexes {
		h, n, _ := v1.SHA256(bytes.NewReader(d.Data))
		if h != d.Digest || n != d.Size || !isIndexMedia(d.MediaType) {
			return nil, nil, nil, damaged("index %s does not hash to its digest", d.Digest)
		}
		if n, err := x.store.Stat(ctx, d.Digest); err != nil || n != d.Size {
			if _, err := layers.Put(ctx, x.store, d.Data); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	if len(rec.Indexes) > 0 {
		list := slices.Clone(rec.Indexes)
		img.indexes.Store(&list)
	}
	var lost []v1.Hash
	for i, l := range img.layers {
		n, err := x.store.Stat(ctx, l.Digest)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, nil, nil, err
		case n != l.Size:
			x.log.Error("quarantining a damaged blob", "digest", l.Digest, "bytes", n, "recorded", l.Size)
			if err := layers.Quarantine(ctx, x.store, l.Digest); err != nil {
				return nil, nil, nil, err
			}
		default:
			continue
		}
		if !img.rebuildable(i) {
			return nil, nil, nil, damaged("layer %s is missing or damaged, and the record has no store paths to rebuild it from", l.Digest)
		}
		lost = append(lost, l.Digest)
	}
	return img, &rec, lost, nil
}

// blobError classifies an error reading a record's manifest or config:
// a missing or damaged blob makes the record damaged.
func (x *index) blobError(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, layers.ErrDigestMismatch) {
		return damaged("%v", err)
	}
	return err
}

// attach gives img what the record keeps for rebuilding its layers,
// checking it against the image.
func (rec *record) attach(img *Image) error {
	img.tag = rec.Tag
	if rec.Layers != nil {
		if len(rec.Layers) != len(img.layers) {
			return fmt.Errorf("record has %d layers, the manifest %d", len(rec.Layers), len(img.layers))
		}
		groups := make([][]string, len(rec.Layers)-1)
		for i, rl := range rec.Layers {
			if rl.Digest != img.layers[i].Digest || rl.Size != img.layers[i].Size {
				return fmt.Errorf("record layer %d is %s, the manifest's %s", i, rl.Digest, img.layers[i].Digest)
			}
			last := i == len(rec.Layers)-1
			if last != (len(rl.Paths) == 0) || slices.ContainsFunc(rl.Paths, func(p string) bool { return !closure.ValidStorePath(p) }) {
				return fmt.Errorf("record layer %d has bad store paths", i)
			}
			if !last {
				groups[i] = rl.Paths
			}
		}
		img.groups = groups
	}
	if rec.Outputs != nil {
		if len(rec.Outputs) != len(rec.Packages) {
			return fmt.Errorf("record has %d outputs for %d packages", len(rec.Outputs), len(rec.Packages))
		}
		for i, p := range rec.Outputs {
			if !closure.ValidStorePath(p) {
				return fmt.Errorf("record output %q is not a store path", p)
			}
			img.outputs = append(img.outputs, nix.Package{Name: rec.Packages[i], Attr: rec.Packages[i], Path: p})
		}
	}
	return nil
}

// readBlob reads a small blob and checks it against its descriptor.
func (x *index) readBlob(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if err := layers.ValidateDigest(d.Digest); err != nil {
		return nil, err
	}
	rc, err := x.store.Open(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	h, n, _ := v1.SHA256(bytes.NewReader(b))
	if h != d.Digest || n != d.Size {
		return nil, fmt.Errorf("%w: blob %s: %d stored bytes hash to %s", layers.ErrDigestMismatch, d.Digest, n, h)
	}
	return b, nil
}

// times is the on-disk form of the last-requested times, dir/.last-requested:
// when each image was last requested, in milliseconds since the epoch. It is
// written by every collection (so at most once a minute, never per
// request) and at Close, merged with what other processes wrote, under the
// collectors' lock; a damaged file is ignored and written anew.
type times struct {
	Version   int              `json:"version"`
	Requested map[string]int64 `json:"requested"`
}

// timesVersion is the version of the times file's format.
const timesVersion = 1

func (x *index) timesFile() string { return filepath.Join(x.dir, ".last-requested") }

// readTimes reads and checks the last-requested times.
func (x *index) readTimes() map[string]int64 {
	b, err := os.ReadFile(x.timesFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var t times
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err == nil && t.Version != timesVersion {
		err = fmt.Errorf("version %d", t.Version)
	}
	limit := time.Now().Add(24 * time.Hour).UnixMilli()
	for k, v := range t.Requested {
		if _, ok := isRecordName(k + ".json"); err == nil && (!ok || v <= 0 || v > limit) {
			err = fmt.Errorf("bad entry %q: %d", truncateString(k, 80), v)
		}
	}
	if err != nil {
		x.log.Warn("ignoring a damaged last-requested file", "file", x.timesFile(), "error", err)
		return nil
	}
	return t.Requested
}

// syncTimes merges the times on disk into the images and writes back the
// times of every image. The caller holds the lock.
func (x *index) syncTimes() error {
	disk := x.readTimes()
	t := times{Version: timesVersion, Requested: map[string]int64{}}
	for _, img := range x.all() {
		if d := disk[img.Key]; d > img.used.Load() {
			img.used.Store(d)
		}
		if u := img.used.Load(); u > 0 {
			t.Requested[img.Key] = u
		}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return atomicfile.Write(x.timesFile(), b)
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errNotManifest: a blob asked for as a manifest is something else.
var errNotManifest = fmt.Errorf("images: not a manifest: %w", fs.ErrNotExist)
