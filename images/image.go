package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// Image is a built image: one config and its layers, described by a Docker
// v2 schema 2 manifest and an OCI manifest (same config bytes, same layer
// blobs, different media types). All of it is in the [layers.BlobStore]; an
// Image holds the small parts (config and manifests) in memory.
type Image struct {
	// Key is the image key: a hash of everything the image's bytes depend
	// on (see [Builder]).
	Key string
	// Packages are the attribute paths the requested names resolved to,
	// sorted, and System the Nix system.
	Packages []string
	System   string

	config    []byte
	configD   v1.Descriptor
	layers    []layers.Descriptor
	manifests []v1.Descriptor // Docker first, then OCI; Data holds the bytes

	// annotations are the manifests' annotations (provenance, see
	// Builder.annotationsFor); nil for records written before them.
	annotations map[string]string
	// sboms are the image's SBOMs (SPDX, then CycloneDX), Data holding
	// their bytes, and referrers the artifact manifests that attach them
	// to each manifest; both empty for records written before SBOMs.
	sboms     []v1.Descriptor
	referrers []referrer
	sbomTime  time.Duration // how long generating the SBOM took, for the build's log line

	// What rebuilding a damaged layer takes, when known (records written
	// before they were kept lack them): the tag the image was asked for,
	// the store paths of each layer but the customisation layer, and the
	// package each attribute of Packages resolved to.
	tag     string
	groups  [][]string
	outputs []nix.Package
	// pathSizes are the NAR sizes of the store paths, when known (for
	// images built by this process).
	pathSizes map[string]int64

	// indexes are the image indexes (of both formats) that have the
	// image among their members (see [Builder.Indexes]), with their bytes
	// as Data; written under the index's mu.
	indexes atomic.Pointer[[]v1.Descriptor]

	used       atomic.Int64 // when last requested, unix milliseconds (here or, as far as known, elsewhere)
	here       atomic.Int64 // when last requested from this process
	saved      bool         // its record is on disk (guarded by the index's mu)
	dropReason string       // why a collection drops it (the collector's)
}

// touch notes that the image was requested from this process now.
func (img *Image) touch() {
	if now := time.Now().UnixMilli(); img.here.Load() != now {
		img.here.Store(now)
		img.used.Store(now)
	}
}

// blobs returns the digests and sizes of every blob of the image: its
// manifests, its config, its layers and its SBOMs with their artifacts.
func (img *Image) blobs() map[v1.Hash]int64 {
	m := make(map[v1.Hash]int64, len(img.layers)+6)
	for _, d := range img.manifests {
		m[d.Digest] = d.Size
	}
	if img.referrers != nil {
		for _, d := range img.sboms {
			m[d.Digest] = d.Size
		}
		e := emptyDescriptor()
		m[e.Digest] = e.Size
		for _, r := range img.referrers {
			m[r.desc.Digest] = r.desc.Size
		}
	}
	m[img.configD.Digest] = img.configD.Size
	for _, l := range img.layers {
		m[l.Digest] = l.Size
	}
	for _, d := range img.indexList() {
		m[d.Digest] = d.Size
	}
	return m
}

// indexList returns the image indexes that have the image as a member.
func (img *Image) indexList() []v1.Descriptor {
	if p := img.indexes.Load(); p != nil {
		return *p
	}
	return nil
}

// storePaths returns the store paths of the image's layers (its closure),
// when known.
func (img *Image) storePaths() []string {
	var ps []string
	for _, g := range img.groups {
		ps = append(ps, g...)
	}
	return ps
}

// Manifests returns the image's manifests, Docker v2 schema 2 first (the
// answer to a client that asks for no particular format), then OCI. Each
// descriptor's Data holds the manifest's bytes. The slice is shared: do not
// modify it.
func (img *Image) Manifests() []v1.Descriptor { return img.manifests }

// Layers returns the descriptors of the image's layers, bottom first, the
// customisation layer last.
func (img *Image) Layers() []layers.Descriptor { return img.layers }

// Config returns the image config's bytes.
func (img *Image) Config() []byte { return img.config }

// configDescriptor describes the config blob.
func (img *Image) configDescriptor() v1.Descriptor { return img.configD }

// newImage assembles an Image from its config and layers, writing the
// manifests' bytes, with annotations.
func newImage(key string, pkgs []string, system string, config []byte, ls []layers.Descriptor, annotations map[string]string) (*Image, error) {
	img := &Image{Key: key, Packages: pkgs, System: system, config: config, layers: ls, annotations: annotations}
	img.configD = manifestDescriptor(MediaTypeDockerConfig, config)
	img.configD.Data = nil
	for f := range numFormats {
		body, err := manifestFor(f, config, ls, annotations)
		if err != nil {
			return nil, err
		}
		img.manifests = append(img.manifests, manifestDescriptor(formatMedia[f].manifest, body))
	}
	return img, nil
}

// manifestDescriptor describes a small blob, with its bytes as Data.
func manifestDescriptor(mediaType string, body []byte) v1.Descriptor {
	h, n, _ := v1.SHA256(bytes.NewReader(body))
	return v1.Descriptor{MediaType: types.MediaType(mediaType), Digest: h, Size: n, Data: body}
}

// attachSBOMs gives img its SBOMs (media type and bytes as Data) and the
// artifact manifests that attach them to the image's manifests.
func (img *Image) attachSBOMs(docs []v1.Descriptor) error {
	rs, err := sbomReferrers(img.manifests, docs)
	if err != nil {
		return err
	}
	img.sboms, img.referrers = docs, rs
	return nil
}

// sbomBlobs returns the bytes of the blobs of the image's SBOMs: the
// documents, then the artifacts' blobs (artifactBlobs).
func (img *Image) sbomBlobs() [][]byte {
	var out [][]byte
	for _, d := range img.sboms {
		out = append(out, d.Data)
	}
	return append(out, img.artifactBlobs()...)
}

// artifactBlobs returns the bytes of the blobs that attach the SBOMs: the
// empty config and the artifact manifests.
func (img *Image) artifactBlobs() [][]byte {
	if img.referrers == nil {
		return nil
	}
	out := [][]byte{emptyJSON}
	for _, r := range img.referrers {
		out = append(out, r.desc.Data)
	}
	return out
}

// SBOM returns the image's SPDX 2.3 JSON document, with its bytes as Data,
// and false for an image built before SBOMs were.
func (img *Image) SBOM() (v1.Descriptor, bool) { return img.sbomOf(MediaTypeSPDX) }

// CycloneDX returns the image's CycloneDX 1.6 JSON document, with its
// bytes as Data, and false for an image built before it was made.
func (img *Image) CycloneDX() (v1.Descriptor, bool) { return img.sbomOf(MediaTypeCycloneDX) }

func (img *Image) sbomOf(mediaType string) (v1.Descriptor, bool) {
	for _, d := range img.sboms {
		if string(d.MediaType) == mediaType {
			return d, true
		}
	}
	return v1.Descriptor{}, false
}

// Referrers returns the descriptors of the manifests whose subject is the
// image's manifest h (its SBOM artifacts), each with its artifactType,
// annotations and bytes as Data.
// The slice is shared: do not modify it.
func (img *Image) Referrers(h v1.Hash) []v1.Descriptor {
	for _, r := range img.referrers {
		if r.subject == h {
			return r.list
		}
	}
	return nil
}

// imageFromBlobs rebuilds an Image from its Docker manifest and its config,
// as read back from the store, checking that they agree; annotations are
// the manifests' annotations, as recorded.
func imageFromBlobs(key string, pkgs []string, system string, dockerManifest, config []byte, annotations map[string]string) (*Image, error) {
	var m v1.Manifest
	if err := json.Unmarshal(dockerManifest, &m); err != nil {
		return nil, fmt.Errorf("images: manifest: %w", err)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(config, &cf); err != nil {
		return nil, fmt.Errorf("images: config: %w", err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("images: config has %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	ls := make([]layers.Descriptor, len(m.Layers))
	for i, l := range m.Layers {
		ls[i] = layers.Descriptor{Digest: l.Digest, DiffID: cf.RootFS.DiffIDs[i], Size: l.Size}
	}
	img, err := newImage(key, pkgs, system, config, ls, annotations)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(img.manifests[formatDocker].Data, dockerManifest) {
		return nil, fmt.Errorf("images: stored manifest %s differs from the one its config and layers give", img.manifests[formatDocker].Digest)
	}
	return img, nil
}

// V1 returns the image as a go-containerregistry v1.Image with the Docker
// v2 schema 2 manifest, the one `docker pull` gets: its digest is the
// Docker-Content-Digest the registry serves. Layers are read from store
// only when asked for.
func (img *Image) V1(ctx context.Context, store layers.BlobStore) v1.Image {
	return img.v1(ctx, store, formatDocker)
}

// V1OCI is V1 with the image's OCI manifest, the one a client that asks
// for the OCI media type gets: same config bytes and layer blobs, OCI
// media types.
func (img *Image) V1OCI(ctx context.Context, store layers.BlobStore) v1.Image {
	return img.v1(ctx, store, formatOCI)
}

func (img *Image) v1(ctx context.Context, store layers.BlobStore, f format) v1.Image {
	v, err := partial.CompressedToImage(&v1Image{img: img, ctx: ctx, store: store, format: f})
	if err != nil {
		panic(err) // CompressedToImage cannot fail
	}
	return v
}

// v1Image is a partial.CompressedImageCore over an Image in one format.
type v1Image struct {
	img    *Image
	ctx    context.Context
	store  layers.BlobStore
	format format
}

func (v *v1Image) RawConfigFile() ([]byte, error) { return v.img.config, nil }

func (v *v1Image) MediaType() (types.MediaType, error) {
	return v.img.manifests[v.format].MediaType, nil
}

func (v *v1Image) RawManifest() ([]byte, error) { return v.img.manifests[v.format].Data, nil }

func (v *v1Image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range v.img.layers {
		if l.Digest == h {
			return layers.V1Layer(v.ctx, v.store, l, types.MediaType(formatMedia[v.format].layer)).(partial.CompressedLayer), nil
		}
	}
	return nil, fmt.Errorf("images: image %s has no layer %s", v.img.Key, h)
}
