package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrBlobUnknown is returned (wrapped) by a [BlobStore] for a digest it does
// not hold. It matches fs.ErrNotExist.
var ErrBlobUnknown error = blobUnknown{}

type blobUnknown struct{}

func (blobUnknown) Error() string        { return "layers: blob unknown" }
func (blobUnknown) Is(target error) bool { return target == fs.ErrNotExist }

// ErrDigestMismatch is returned (wrapped) by [BlobWriter.Commit] when the
// bytes written do not hash to the expected digest, in which case nothing is
// stored, and by [Verifier.Open] for a stored blob whose bytes do not hash
// to its name.
var ErrDigestMismatch = errors.New("layers: digest mismatch")

// BlobStore holds content-addressed blobs: layers, image configs and
// manifests, each under the sha256 digest of its bytes. Implementations must
// be safe for concurrent use, and a blob must never be visible before all of
// its bytes are written and verified. Digests from outside (a URL, a cache
// file) must be checked with [ParseDigest] or [ValidateDigest] before they
// are used as names; [FSStore] checks every digest it is given and returns
// an error wrapping [ErrInvalidDigest] for a bad one.
//
// A store promises nothing about bytes once they are stored: a disk may
// lose or damage them. [Verifier] checks what is read against the digest;
// [Put] and [BlobWriter.Commit] replace what does not verify.
//
// List and Delete are what a garbage collector needs; together with
// [BlobInfo.ModTime] they let it leave young blobs alone, whatever the
// backend. [Quarantiner] is an optional capability.
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
	// List calls fn for every blob, in no particular order, and stops at
	// the first error fn returns, which List returns. Blobs committed or
	// deleted while List runs may or may not be seen.
	List(ctx context.Context, fn func(BlobInfo) error) error
	// Delete removes the blob h, or returns an error wrapping
	// ErrBlobUnknown. A reader that has the blob open may go on reading it.
	Delete(ctx context.Context, h v1.Hash) error
}

// BlobInfo describes a stored blob, as [BlobStore.List] reports it.
type BlobInfo struct {
	Digest v1.Hash
	Size   int64
	// ModTime is when the blob was last committed (a commit of a blob
	// that exists writes it again).
	ModTime time.Time
}

// Quarantiner is implemented by stores that can set a damaged blob aside,
// out of the store's view but kept for inspection, rather than delete it.
// [Quarantine] uses it when it can.
type Quarantiner interface {
	// Quarantine moves the blob h aside; afterwards the store does not
	// hold h.
	Quarantine(ctx context.Context, h v1.Hash) error
}

// Quarantine takes the blob h out of s: aside if s is a [Quarantiner],
// otherwise by deleting it. A blob that is not there is not an error.
func Quarantine(ctx context.Context, s BlobStore, h v1.Hash) error {
	var err error
	if q, ok := s.(Quarantiner); ok {
		err = q.Quarantine(ctx, h)
	} else {
		err = s.Delete(ctx, h)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// URLStore is implemented by stores that can let a client fetch a blob
// directly, such as an object store's presigned URLs. The registry then
// redirects blob GETs there (see images.Builder.BlobURL).
type URLStore interface {
	// URL returns a URL from which the blob h can be fetched with a GET
	// for the next expiry. It need not check that the blob exists.
	URL(ctx context.Context, h v1.Hash, expiry time.Duration) (string, error)
}

// BlobWriter receives a new blob's bytes.
type BlobWriter interface {
	io.Writer
	// Commit checks that the bytes written hash to h and makes them
	// visible under h, atomically. A blob already stored under h is
	// replaced: the bytes just written are known to be right, the stored
	// ones may be damaged.
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

// maxPutVerify bounds the blobs that Put reads back to check rather than
// write again.
const maxPutVerify = 16 << 20

// Put stores data as a blob and returns its digest. It is meant for small
// blobs such as image configs and manifests. A blob that is already stored
// is kept if its bytes are data, and written again otherwise.
func Put(ctx context.Context, s BlobStore, data []byte) (v1.Hash, error) {
	h := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(data))}
	if n, err := s.Stat(ctx, h); err == nil && n == int64(len(data)) && n <= maxPutVerify && holds(ctx, s, h, data) {
		return h, nil
	}
	w, err := s.Create(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	if _, err := w.Write(data); err != nil {
		w.Cancel()
		return v1.Hash{}, err
	}
	if err := w.Commit(h); err != nil {
		return v1.Hash{}, err
	}
	return h, nil
}

// holds reports whether the blob h of s has exactly the bytes data.
func holds(ctx context.Context, s BlobStore, h v1.Hash, data []byte) bool {
	rc, err := s.Open(ctx, h)
	if err != nil {
		return false
	}
	defer rc.Close()
	got, err := io.ReadAll(io.LimitReader(rc, int64(len(data))+1))
	return err == nil && bytes.Equal(got, data)
}
