package registry

import (
	"encoding/json"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/nixery-go/nixery/layers"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the two manifest formats the registry serves. Each format
// has its own media types for the config and the layers; the bytes behind
// them are the same.
const (
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	MediaTypeOCIConfig      = ocispec.MediaTypeImageConfig
	MediaTypeOCILayer       = ocispec.MediaTypeImageLayerGzip
)

// format is a manifest format: Docker v2 schema 2 or OCI.
type format int

const (
	formatDocker format = iota
	formatOCI
	numFormats
)

var formatMedia = [numFormats]struct{ manifest, config, layer string }{
	formatDocker: {MediaTypeDockerManifest, MediaTypeDockerConfig, MediaTypeDockerLayer},
	formatOCI:    {MediaTypeOCIManifest, MediaTypeOCIConfig, MediaTypeOCILayer},
}

func (f format) String() string {
	if f == formatOCI {
		return "oci"
	}
	return "docker"
}

// negotiate picks the manifest format from a request's Accept headers: the
// acceptable format with the highest q-value, the one listed first on a tie.
// Docker v2 schema 2 is the answer when neither is listed (no Accept header,
// */*, or only formats this registry does not produce), as upstream Nixery
// and most registries do.
func negotiate(accept []string) format {
	best, bestQ := formatDocker, -1.0
	for _, header := range accept {
		for _, item := range strings.Split(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(item))
			if err != nil {
				continue
			}
			var f format
			switch mt {
			case MediaTypeDockerManifest:
				f = formatDocker
			case MediaTypeOCIManifest:
				f = formatOCI
			default:
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(s, 64); err == nil {
					q = v
				}
			}
			if q > bestQ && q > 0 {
				best, bestQ = f, q
			}
		}
	}
	return best
}

// Created is the creation time of every image and history entry: fixed, so
// that the same packages give the same config bytes, and one second after
// the epoch (like the mtimes in the layers) because some tools treat a zero
// time as missing.
var Created = time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)

// DefaultPath is the PATH in every image's environment.
const DefaultPath = "/bin:/usr/bin:/sbin"

// CertFile is where the customisation layer puts the CA bundle, and what
// SSL_CERT_FILE points at.
const CertFile = "/etc/ssl/certs/ca-bundle.crt"

// imageLayer is a layer of an image with the text of its history entry.
type imageLayer struct {
	layers.Descriptor
	history string
}

// configFor returns the image config for layers, in order. The bytes are
// deterministic: the same inputs give the same config, byte for byte.
func configFor(system string, ls []imageLayer, cmd []string) ([]byte, error) {
	arch, err := goArch(system)
	if err != nil {
		return nil, err
	}
	created := Created
	img := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: arch, OS: "linux"},
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=" + DefaultPath, "SSL_CERT_FILE=" + CertFile},
			Cmd: cmd,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: make([]digest.Digest, len(ls))},
	}
	for i, l := range ls {
		img.RootFS.DiffIDs[i] = digest.Digest(l.DiffID.String())
		img.History = append(img.History, ocispec.History{
			Created:   &created,
			CreatedBy: "nixery",
			Comment:   l.history,
		})
	}
	return json.Marshal(img)
}

// goArch maps a Nix system to the image's architecture.
func goArch(system string) (string, error) {
	switch system {
	case SystemAMD64:
		return "amd64", nil
	case SystemARM64:
		return "arm64", nil
	}
	return "", fmt.Errorf("registry: no image architecture for system %q", system)
}

// manifestFor returns the manifest in format f for the config bytes and
// layers.
func manifestFor(f format, config []byte, ls []imageLayer) ([]byte, error) {
	media := formatMedia[f]
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: media.manifest,
		Config: ocispec.Descriptor{
			MediaType: media.config,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers: make([]ocispec.Descriptor, len(ls)),
	}
	for i, l := range ls {
		m.Layers[i] = ocispec.Descriptor{
			MediaType: media.layer,
			Digest:    digest.Digest(l.Digest.String()),
			Size:      l.Size,
		}
	}
	return json.Marshal(m)
}
