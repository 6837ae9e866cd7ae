package layers

import (
	"context"
	"errors"
	"io"
	"io/fs"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrBlobUnknown is returned (wrapped) by a [BlobStore] for a digest it does
// not hold. It matches fs.ErrNotExist.
var ErrBlobUnknown error = blobUnknown{}

type blobUnknown struct{}

func (blobUnknown) Error() string        { return "layers: blob unknown" }
func (blobUnknown) Is(target error) bool { return target == fs.ErrNotExist }

// ErrDigestMismatch is returned (wrapped) by [BlobWriter.Commit] when the
// bytes written do not hash to the expected digest; nothing is stored.
var ErrDigestMismatch = errors.New("layers: digest mismatch")

// BlobStore holds content-addressed blobs: layers, image configs and
// manifests, each under the sha256 digest of its bytes. Implementations must
// be safe for concurrent use, and a blob must never be visible before all of
// its bytes are written and verified. Digests from outside (a URL, a cache
// file) must be checked with [ParseDigest] or [ValidateDigest] before they
// are used as names; [FSStore] checks every digest it is given and returns
// an error wrapping [ErrInvalidDigest] for a bad one.
//
// [FSStore] is the filesystem implementation; [Put] stores a small blob.
type BlobStore interface {
	// Stat returns the size of the blob, or an error wrapping ErrBlobUnknown.
	Stat(ctx context.Context, h v1.Hash) (int64, error)
	// Open returns the blob's bytes. For the filesystem store the result is
	// an *os.File, so net/http can serve it with sendfile and Range.
	Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, error)
	// Create starts a new blob. Its bytes become visible only through
	// [BlobWriter.Commit].
	Create(ctx context.Context) (BlobWriter, error)
}

// BlobWriter receives a new blob's bytes.
type BlobWriter interface {
	io.Writer
	// Commit checks that the bytes written hash to h and makes them
	// visible under h, atomically. Committing a blob that already exists
	// succeeds and keeps the existing one.
	Commit(h v1.Hash) error
	// Cancel discards what was written. It is a no-op after Commit.
	Cancel() error
}

// Descriptor describes a layer blob in a [BlobStore]: what an image manifest
// (Digest, Size) and config (DiffID) need to refer to it. [V1Layer] turns it
// into a go-containerregistry v1.Layer.
type Descriptor struct {
	Digest v1.Hash // sha256 of the compressed blob
	DiffID v1.Hash // sha256 of the uncompressed tar
	Size   int64   // bytes of the compressed blob
}
