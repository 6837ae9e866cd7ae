package images

import (
	"encoding/json"
	"fmt"

	"github.com/nixery-go/nixery/layers"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the two manifest formats an image has. Each format has its
// own media types for the config and the layers; the bytes behind them are
// the same.
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

// Created is the creation time of every image and history entry: fixed, so
// that the same packages give the same config bytes, and the time of every
// layer entry ([layers.Epoch], one second after the epoch, because some
// tools treat a zero time as missing).
var Created = layers.Epoch

// DefaultPath is the PATH in every image's environment.
const DefaultPath = "/bin:/usr/bin:/sbin"

// CertFile is where the customisation layer puts the CA bundle, and what
// SSL_CERT_FILE points at.
const CertFile = "/etc/ssl/certs/ca-bundle.crt"

// configFor returns the image config for layers, in order, with one
// history entry per layer. The bytes are deterministic: the same inputs
// give the same config, byte for byte.
func configFor(system string, ls []layers.Descriptor, history []string, cmd []string) ([]byte, error) {
	platform, err := platformOf(system)
	if err != nil {
		return nil, err
	}
	created := Created
	img := ocispec.Image{
		Created:  &created,
		Platform: platform,
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
			Comment:   history[i],
		})
	}
	return json.Marshal(img)
}

// Systems an image can be built for.
const (
	SystemAMD64 = "x86_64-linux"
	SystemARM64 = "aarch64-linux"
)

// platformOf maps a Nix system to the image's platform: linux/amd64, or
// linux/arm64 with variant v8 (what Docker and containerd call arm64).
func platformOf(system string) (ocispec.Platform, error) {
	switch system {
	case SystemAMD64:
		return ocispec.Platform{Architecture: "amd64", OS: "linux"}, nil
	case SystemARM64:
		return ocispec.Platform{Architecture: "arm64", OS: "linux", Variant: "v8"}, nil
	}
	return ocispec.Platform{}, fmt.Errorf("images: no image platform for system %q", system)
}

// manifestFor returns the manifest in format f for the config bytes and
// layers.
func manifestFor(f format, config []byte, ls []layers.Descriptor, annotations map[string]string) ([]byte, error) {
	media := formatMedia[f]
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: media.manifest,
		Config: ocispec.Descriptor{
			MediaType: media.config,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers:      make([]ocispec.Descriptor, len(ls)),
		Annotations: annotations,
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
