package layers

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"io"

	"github.com/klauspost/compress/gzip"
)

// WriteTarLayer writes a small layer whose tar entries come from write, as a
// single gzip member at the given level (0 means DefaultLevel) with the same
// fixed gzip header as every other layer, and returns its descriptor. It
// suits layers made in Go, such as an image's customisation layer; write is
// responsible for making its entries deterministic (see [Epoch]). The tar
// end-of-archive blocks are added after write returns.
//
// The bytes flow as in go-containerregistry's stream.Layer: tar writer ->
// (DiffID hash, gzip writer) -> (blob, digest hash), in one pass.
func WriteTarLayer(ctx context.Context, store BlobStore, level int, write func(*tar.Writer) error) (Descriptor, error) {
	if level == 0 {
		level = DefaultLevel
	}
	zw, err := gzip.NewWriterLevel(nil, level)
	if err != nil {
		return Descriptor{}, err
	}
	bw, err := store.Create(ctx)
	if err != nil {
		return Descriptor{}, err
	}
	digest := sha256.New()
	blob := &countWriter{w: io.MultiWriter(bw, digest)}
	zw.Reset(blob)
	zw.Header = gzip.Header{OS: gzipOS}
	diffID := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(diffID, zw))
	err = write(tw)
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		bw.Cancel()
		return Descriptor{}, err
	}
	d := Descriptor{Digest: hashOf(digest), DiffID: hashOf(diffID), Size: blob.n}
	if err := bw.Commit(d.Digest); err != nil {
		return Descriptor{}, err
	}
	return d, nil
}
