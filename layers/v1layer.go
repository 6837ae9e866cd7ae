package layers

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// V1Layer returns the layer d of store as a go-containerregistry v1.Layer
// with the given media type (types.OCILayer or types.DockerLayer: the bytes
// are the same, the manifest that lists the layer decides). Digest, DiffID
// and size come from d; the bytes are read from store only when asked for,
// and Uncompressed decompresses them.
func V1Layer(ctx context.Context, store BlobStore, d Descriptor, mt types.MediaType) v1.Layer {
	l, err := partial.CompressedToLayer(&storeLayer{ctx: ctx, store: store, d: d, mt: mt})
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
	mt    types.MediaType
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *storeLayer) DiffID() (v1.Hash, error)            { return l.d.DiffID, nil }
func (l *storeLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	return l.store.Open(l.ctx, l.d.Digest)
}
