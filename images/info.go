package images

import "time"

// ImageInfo describes an image of the index for people: see
// [Builder.ImageInfo].
type ImageInfo struct {
	Key      string   `json:"key"`
	Name     string   `json:"name"` // DisplayName of the packages
	Packages []string `json:"packages"`
	System   string   `json:"system"`
	Tag      string   `json:"tag,omitempty"`
	// Digest is the Docker manifest's, OCIDigest the OCI manifest's.
	Digest    string      `json:"digest"`
	OCIDigest string      `json:"ociDigest"`
	Bytes     int64       `json:"bytes"`
	LastUsed  time.Time   `json:"lastUsed"`
	Layers    []LayerInfo `json:"layers"`
}

// LayerInfo is one layer of an [ImageInfo].
type LayerInfo struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Custom marks the customisation layer, which has no store paths.
	Custom bool       `json:"custom,omitempty"`
	Paths  []PathInfo `json:"paths"`
	// SharedWith are the other images that have this layer.
	SharedWith []ImageRef `json:"sharedWith"`
}

// PathInfo is a store path of a layer and its NAR size (0 when unknown:
// the sizes are known for the images this process built).
type PathInfo struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// ImageRef names an image.
type ImageRef struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

// ImageInfo returns what the index knows of the image with key: its
// manifests, its layers with their store paths and sizes, and the other
// images that share each layer.
func (b *Builder) ImageInfo(key string) (ImageInfo, bool) {
	img := b.index.get(key)
	if img == nil {
		return ImageInfo{}, false
	}
	info := ImageInfo{
		Key: img.Key, Name: DisplayName(img.Packages), Packages: img.Packages,
		System: img.System, Tag: img.tag,
		LastUsed: time.UnixMilli(img.used.Load()),
	}
	if len(img.manifests) > int(formatOCI) {
		info.Digest = img.manifests[formatDocker].Digest.String()
		info.OCIDigest = img.manifests[formatOCI].Digest.String()
	}
	for i, l := range img.layers {
		li := LayerInfo{Digest: l.Digest.String(), Size: l.Size, Paths: []PathInfo{}, SharedWith: []ImageRef{}}
		info.Bytes += l.Size
		if i < len(img.groups) {
			for _, p := range img.groups[i] {
				li.Paths = append(li.Paths, PathInfo{Path: p, Size: img.pathSizes[p]})
			}
		} else {
			li.Custom = i == len(img.layers)-1
		}
		for _, o := range b.index.owners(l.Digest) {
			if o.Key != img.Key {
				li.SharedWith = append(li.SharedWith, ImageRef{Key: o.Key, Name: DisplayName(o.Packages)})
			}
		}
		info.Layers = append(info.Layers, li)
	}
	return info, true
}
