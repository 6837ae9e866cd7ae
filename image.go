package nixery

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/images"
)

// ImageOptions choose among the images of a name (see [Server.ImageWith]).
type ImageOptions struct {
	// System is the Nix system to build for, as the "arm64" meta-package
	// chooses aarch64-linux. Empty means what the name says (x86_64-linux
	// unless it has "arm64"); a system other than the name's is an error.
	System string
	// OCI returns the image with its OCI manifest, the one a pull that
	// asks for the OCI media type gets, rather than the Docker v2 schema 2
	// one: same config and layer blobs, another manifest digest.
	OCI bool
}

// ImageWith returns the image that name asks for at tag "latest", as
// [Server.Image] does, for o's system and in o's manifest format. The
// image, and its errors, are the registry's: an unknown package or a bad
// name gives the error whose text a pull gets in its error body.
func (s *Server) ImageWith(ctx context.Context, name string, o ImageOptions) (v1.Image, error) {
	var img *images.Image
	var err error
	if o.System == "" {
		img, err = s.images.Image(ctx, name, "latest")
	} else {
		var req *images.Request
		if req, err = images.ParseName(name, 0); err != nil {
			return nil, err
		}
		if req.System != "" && req.System != o.System {
			return nil, &images.NameError{Name: name, Reason: fmt.Sprintf("the name asks for %s, not %s", req.System, o.System)}
		}
		req.System = o.System
		img, err = s.images.ImageFor(ctx, *req)
	}
	if err != nil {
		return nil, err
	}
	if o.OCI {
		return img.V1OCI(ctx, s.images.Store()), nil
	}
	return img.V1(ctx, s.images.Store()), nil
}
