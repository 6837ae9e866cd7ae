package layers

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// V1Layer returns the layer d of store as a go-containerregistry v1.Layer
// with media type application/vnd.oci.image.layer.v1.tar+gzip (Docker
// clients accept it in Docker manifests too). Digest, DiffID and size come
// from d; the bytes are read from store only when asked for, and
// Uncompressed decompresses them.
func V1Layer(ctx context.Context, store BlobStore, d Descriptor) v1.Layer {
	l, err := partial.CompressedToLayer(&storeLayer{ctx: ctx, store: store, d: d})
	if err != nil {
		panic(err) // CompressedToLayer cannot fail
	}
	return l
}

// storeLayer is a partial.CompressedLayer backed by a BlobStore.
type storeLayer struct {
	ctx   context.Context
	store BlobStore
	d     Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error) { return l.d.Digest, nil }
func (l *storeLayer) DiffID() (v1.Hash, error) { return l.d.DiffID, nil }
func (l *storeLayer) Size() (int64, error)     { return l.d.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}
func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	return l.store.Open(l.ctx, l.d.Digest)
}
