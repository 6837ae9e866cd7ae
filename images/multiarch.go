package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixery-go/nixery/layers"
)

// Media types of the two image index formats: a Docker manifest list of
// Docker v2 schema 2 manifests, and an OCI image index of OCI manifests.
const (
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIIndex           = ocispec.MediaTypeImageIndex
)

// IndexSystems are the systems of an image index, in its order: a name
// without the "arm64" meta-package, asked for by a client that accepts
// indexes, gets an index of an image for each (see [Builder.Indexes]).
var IndexSystems = []string{SystemAMD64, SystemARM64}

var indexMedia = [numFormats]string{formatDocker: MediaTypeDockerManifestList, formatOCI: MediaTypeOCIIndex}

// multiArch is an index built for a name and tag: its two formats and its
// members, in the order of IndexSystems.
type multiArch struct {
	indexes []v1.Descriptor // Docker manifest list first, then OCI index
	members []*Image
}

// indexMemo remembers the indexes of names at pinned sources.
type indexMemo struct {
	mu sync.RWMutex
	m  map[memoKey]*multiArch
}

func (im *indexMemo) get(k memoKey) *multiArch {
	im.mu.RLock()
	defer im.mu.RUnlock()
	return im.m[k]
}

func (im *indexMemo) put(k memoKey, ma *multiArch) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.m == nil {
		im.m = map[memoKey]*multiArch{}
	}
	if len(im.m) < maxMemo {
		im.m[k] = ma
	}
}

// forget drops the indexes that have img among their members (a
// collection dropped it).
func (im *indexMemo) forget(img *Image) {
	im.mu.Lock()
	defer im.mu.Unlock()
	for k, ma := range im.m {
		if slices.Contains(ma.members, img) {
			delete(im.m, k)
		}
	}
}

// Indexes returns the image indexes of the image name asks for at tag: a
// Docker manifest list (first) and an OCI image index, each with its bytes
// as Data, of the image for each of [IndexSystems] (linux/amd64, and
// linux/arm64 variant v8), which are built concurrently unless built
// before. A name that selects its system ("arm64/...") has no index:
// Indexes returns nil and no error, and the caller serves its image.
//
// The indexes are kept with their member images: in the index of images,
// in their records, in the store (so that they are served by digest) and
// by garbage collection, which keeps them while a member is kept. An
// error building a member names its system unless both failed alike (an
// unknown package), when it is the error of the first.
func (b *Builder) Indexes(ctx context.Context, name, tag string) ([]v1.Descriptor, error) {
	if ma := b.index.multi.get(memoKey{name, tag}); ma != nil {
		b.touchAll(ma.members)
		return ma.indexes, nil
	}
	req, err := ParseName(name, b.cfg.MaxPackages)
	if err != nil {
		return nil, err
	}
	if namesSystem(name) {
		return nil, nil
	}
	req.Tag = tag
	members := make([]*Image, len(IndexSystems))
	errs := make([]error, len(IndexSystems))
	pinned := make([]bool, len(IndexSystems))
	var wg sync.WaitGroup
	for i, system := range IndexSystems {
		r := *req
		r.System = system
		wg.Add(1)
		go func() {
			defer wg.Done()
			members[i], pinned[i], errs[i] = b.image(ctx, r)
		}()
	}
	wg.Wait()
	if errs[0] != nil {
		return nil, errs[0]
	}
	for i, err := range errs {
		if err != nil && errors.Is(err, errors.ErrUnsupported) {
			// The source cannot build this system at all (no builder for
			// it, say): the name has one platform here, and a client that
			// accepts indexes gets the host's image, as before indexes.
			b.log.LogAttrs(ctx, slog.LevelDebug, "no image index: a system cannot be built",
				slog.String("system", IndexSystems[i]), slog.String("error", err.Error()))
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("images: the %s image of %q: %w", IndexSystems[i], truncateString(name, 64), err)
		}
	}
	ma, err := newMultiArch(members)
	if err != nil {
		return nil, err
	}
	for _, d := range ma.indexes {
		if _, err := layers.Put(ctx, b.cfg.Store, d.Data); err != nil {
			return nil, fmt.Errorf("images: storing an image index: %w", err)
		}
	}
	for _, m := range members {
		if err := b.index.addIndexes(ctx, m, ma.indexes); err != nil {
			b.log.LogAttrs(ctx, slog.LevelError, "cannot save the image record", slog.String("key", m.Key), slog.String("error", err.Error()))
		}
	}
	if !slices.Contains(pinned, false) {
		b.index.multi.put(memoKey{name, tag}, ma)
	}
	b.touchAll(members)
	return ma.indexes, nil
}

// CachedIndexes returns the indexes of name at tag, as [Builder.Indexes]
// does, if they were made before (by this process or, through the records,
// an earlier one) for a pinned source, without building and without
// waiting for anything; false otherwise, and for a name without an index.
func (b *Builder) CachedIndexes(name, tag string) ([]v1.Descriptor, bool) {
	k := memoKey{name, tag}
	if ma := b.index.multi.get(k); ma != nil {
		b.touchAll(ma.members)
		return ma.indexes, true
	}
	r, err := ParseName(name, b.cfg.MaxPackages)
	if err != nil || namesSystem(name) {
		return nil, false
	}
	members := make([]*Image, len(IndexSystems))
	for i, system := range IndexSystems {
		if members[i] = b.cachedImage(r, tag, system); members[i] == nil {
			return nil, false
		}
	}
	ma, err := newMultiArch(members)
	if err != nil {
		return nil, false
	}
	// Only an index its members keep (in their records) is served from
	// here: it is in the store and counted by collections.
	for _, m := range members {
		have := m.indexList()
		for _, d := range ma.indexes {
			if !slices.ContainsFunc(have, func(h v1.Descriptor) bool { return h.Digest == d.Digest }) {
				return nil, false
			}
		}
	}
	b.index.multi.put(k, ma)
	b.touchAll(members)
	return ma.indexes, true
}

// cachedImage returns the image of r for system at tag if a pinned
// request gave it before.
func (b *Builder) cachedImage(r *Request, tag, system string) *Image {
	pop := b.pop.Load()
	if pop == nil {
		return nil
	}
	if tag == "" {
		tag = r.Tag
	}
	srcKey, pinned, err := b.cfg.Nix.CacheKey(tag)
	if err != nil || !pinned {
		return nil
	}
	return b.index.forRequest(b.keyOf(srcKey, pop.Fingerprint, system, r.Cmd).request(r.Packages))
}

func (b *Builder) touchAll(imgs []*Image) {
	for _, img := range imgs {
		b.touch(img)
	}
}

// newMultiArch writes the two indexes of members, one per system of
// IndexSystems. The bytes depend only on the members' manifests.
func newMultiArch(members []*Image) (*multiArch, error) {
	ma := &multiArch{members: members}
	for f := range numFormats {
		idx := ocispec.Index{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: indexMedia[f],
			Manifests: make([]ocispec.Descriptor, len(members)),
		}
		for i, m := range members {
			platform, err := platformOf(m.System)
			if err != nil {
				return nil, err
			}
			md := m.manifests[f]
			idx.Manifests[i] = ocispec.Descriptor{
				MediaType: string(md.MediaType),
				Digest:    digest.Digest(md.Digest.String()),
				Size:      md.Size,
				Platform:  &platform,
			}
		}
		body, err := json.Marshal(idx)
		if err != nil {
			return nil, err
		}
		ma.indexes = append(ma.indexes, manifestDescriptor(indexMedia[f], body))
	}
	return ma, nil
}

// namesSystem reports whether name selects its system with a
// meta-package ("arm64/..."), and so has no index.
func namesSystem(name string) bool {
	return slices.Contains(strings.Split(name, "/"), MetaARM64)
}

// isIndexMedia reports whether mt is an image index's media type.
func isIndexMedia(mt types.MediaType) bool {
	return mt == MediaTypeDockerManifestList || mt == MediaTypeOCIIndex
}
