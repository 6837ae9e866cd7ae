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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/atomicfile"
	"github.com/nixery-go/nixery/layers"
)

// index is the one cache of built images. It finds an image by its key, by
// the digest of one of its manifests, and by the request that asked for it
// (for pinned sources, whose requests always give the same image), and
// keeps a record of every image in a directory so that it survives a
// restart:
//
//	dir/<key>.json   the record of one image (see record)
//
// The manifests and configs themselves are blobs in the store.
type index struct {
	dir   string // "" keeps the index in memory only
	store layers.BlobStore
	log   *slog.Logger

	// memo maps a name and tag as requested to the image of a pinned
	// source: the lean path for cached manifests, one map lookup.
	memoMu sync.RWMutex
	memo   map[memoKey]*Image

	mu        sync.Mutex
	byKey     map[string]*Image
	byRequest map[string]string // request key -> image key (pinned sources)
	manifests map[v1.Hash]v1.Descriptor
	blobs     map[v1.Hash]int64 // config and layer blobs -> size
	requests  map[string][]string
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
	return &index{
		dir:       dir,
		store:     store,
		log:       log,
		memo:      map[memoKey]*Image{},
		byKey:     map[string]*Image{},
		byRequest: map[string]string{},
		manifests: map[v1.Hash]v1.Descriptor{},
		blobs:     map[v1.Hash]int64{},
		requests:  map[string][]string{},
	}
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

// manifest returns the manifest with digest h.
func (x *index) manifest(h v1.Hash) (v1.Descriptor, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	d, ok := x.manifests[h]
	return d, ok
}

// blobSize returns the size recorded for a config or layer blob.
func (x *index) blobSize(h v1.Hash) (int64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.blobs[h]
	return n, ok
}

// add enters img, asked for by the request key rk (empty for requests that
// cannot be cached by request: unpinned sources), and saves its record.
func (x *index) add(img *Image, rk string) error {
	x.mu.Lock()
	known := x.byKey[img.Key]
	if known == nil {
		x.byKey[img.Key] = img
		for _, m := range img.manifests {
			x.manifests[m.Digest] = m
		}
		x.blobs[img.configDescriptor().Digest] = int64(len(img.config))
		for _, l := range img.layers {
			x.blobs[l.Digest] = l.Size
		}
	}
	changed := known == nil
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
	if !changed {
		return nil
	}
	return x.save(rec)
}

func (x *index) recordLocked(img *Image) *record {
	return &record{
		Key:       img.Key,
		Packages:  img.Packages,
		System:    img.System,
		Requests:  slices.Clone(x.requests[img.Key]),
		Config:    img.configDescriptor(),
		Manifests: withoutData(img.manifests),
	}
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
	if x.dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(x.dir, rec.Key+".json"), append(b, '\n'))
}

// load reads every record in the directory. A record whose manifests or
// config are missing or damaged, or whose layers are not in the store with
// their recorded sizes, is skipped: its image is built again when asked for.
func (x *index) load(ctx context.Context) error {
	if x.dir == "" {
		return nil
	}
	if err := os.MkdirAll(x.dir, 0o755); err != nil {
		return fmt.Errorf("images: index: %w", err)
	}
	if n, _ := atomicfile.RemoveStale(x.dir, atomicfile.TempPrefix, 0); n > 0 {
		x.log.Info("removed temporary files left by an earlier process", "dir", x.dir, "files", n)
	}
	ents, err := os.ReadDir(x.dir)
	if err != nil {
		return fmt.Errorf("images: index: %w", err)
	}
	loaded := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		img, rec, err := x.loadRecord(ctx, filepath.Join(x.dir, name))
		if err != nil {
			x.log.Warn("skipping image record", "file", name, "error", err)
			continue
		}
		if err := x.add(img, ""); err != nil {
			return err
		}
		x.mu.Lock()
		for _, rk := range rec.Requests {
			x.byRequest[rk] = img.Key
		}
		x.requests[img.Key] = rec.Requests
		x.mu.Unlock()
		loaded++
	}
	if loaded > 0 {
		x.log.Info("loaded image index", "images", loaded, "dir", x.dir)
	}
	return nil
}

func (x *index) loadRecord(ctx context.Context, file string) (*Image, *record, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, nil, err
	}
	if rec.Key+".json" != filepath.Base(file) || len(rec.Manifests) != int(numFormats) {
		return nil, nil, errors.New("malformed record")
	}
	if rec.Manifests[formatDocker].MediaType != MediaTypeDockerManifest {
		return nil, nil, fmt.Errorf("first manifest is a %s", rec.Manifests[formatDocker].MediaType)
	}
	manifest, err := x.readBlob(ctx, rec.Manifests[formatDocker])
	if err != nil {
		return nil, nil, err
	}
	config, err := x.readBlob(ctx, rec.Config)
	if err != nil {
		return nil, nil, err
	}
	img, err := imageFromBlobs(rec.Key, rec.Packages, rec.System, manifest, config)
	if err != nil {
		return nil, nil, err
	}
	for f, m := range img.manifests {
		if m.Digest != rec.Manifests[f].Digest {
			return nil, nil, fmt.Errorf("manifest %d is %s, recorded %s", f, m.Digest, rec.Manifests[f].Digest)
		}
		if _, err := x.store.Stat(ctx, m.Digest); err != nil {
			return nil, nil, err
		}
	}
	for _, l := range img.layers {
		n, err := x.store.Stat(ctx, l.Digest)
		if err != nil {
			return nil, nil, err
		}
		if n != l.Size {
			return nil, nil, fmt.Errorf("layer %s has %d bytes, recorded %d", l.Digest, n, l.Size)
		}
	}
	return img, &rec, nil
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
		return nil, fmt.Errorf("blob %s: %d stored bytes hash to %s", d.Digest, n, h)
	}
	return b, nil
}

// errNotManifest: a blob asked for as a manifest is something else.
var errNotManifest = fmt.Errorf("images: not a manifest: %w", fs.ErrNotExist)
