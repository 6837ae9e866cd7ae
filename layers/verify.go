package layers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/flight"
)

// Verifier opens the blobs of a [BlobStore] for serving and never hands out
// one whose bytes do not hash to its digest. It hashes a blob the first
// time it opens it, and again whenever the blob's file identity changes
// (its size, modification and change times, device and inode: any write,
// truncation, chmod or replacement changes one of them); in between,
// opening a verified blob costs one fstat beyond the store's Open, and the
// blob is handed out as the store returned it (an *os.File for [FSStore],
// so net/http still sends it with sendfile). A reader that reports no
// identity (it has no Stat method) is hashed on every Open.
//
// What the file identity cannot see, bits that rot without a write, is the
// job of a scrub that calls [Verifier.Check] on every blob now and then.
//
// A Verifier is safe for concurrent use; concurrent first opens of a blob
// hash it once.
type Verifier struct {
	store BlobStore

	mu sync.Mutex
	ok map[v1.Hash]fileID // identities whose bytes were verified

	flight flight.Group[fileID]
}

// NewVerifier returns a Verifier of the blobs of s.
func NewVerifier(s BlobStore) *Verifier {
	return &Verifier{store: s, ok: map[v1.Hash]fileID{}}
}

// Open returns the blob h and its size once its bytes are known to hash to
// h. A blob whose bytes do not is an error wrapping [ErrDigestMismatch];
// what to do with it (quarantine, repair) is the caller's decision. A
// missing blob is the store's error, wrapping [ErrBlobUnknown].
func (v *Verifier) Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error) {
	rc, err := v.store.Open(ctx, h)
	if err != nil {
		return nil, 0, err
	}
	id, ok := identify(rc)
	if ok && v.verified(h, id) {
		return rc, id.size, nil
	}
	if ok {
		// One hash for concurrent first opens, through a handle of its
		// own; then this handle is good if it is the same file.
		got, err := v.flight.Do(ctx, h.String(), func(ctx context.Context) (fileID, error) { return v.check(ctx, h, nil) })
		if err != nil {
			rc.Close()
			return nil, 0, err
		}
		if got == id {
			return rc, id.size, nil
		}
	}
	// No identity, or the file changed while it was being checked: hash
	// this handle.
	n, err := hashBlob(ctx, rc, h, nil)
	if err == nil {
		_, err = rc.Seek(0, io.SeekStart)
	}
	if err != nil {
		rc.Close()
		return nil, 0, err
	}
	if ok {
		v.mark(h, id)
	}
	return rc, n, nil
}

// Check hashes the blob h now, whatever was verified before, and remembers
// the result for Open. pace, when not nil, is called with the bytes of
// each read, so that a background scrub can hold its rate (an error from
// pace stops the check). A blob whose bytes do not hash to
// h is an error wrapping [ErrDigestMismatch].
func (v *Verifier) Check(ctx context.Context, h v1.Hash, pace func(ctx context.Context, n int) error) error {
	_, err := v.check(ctx, h, pace)
	return err
}

func (v *Verifier) check(ctx context.Context, h v1.Hash, pace func(context.Context, int) error) (fileID, error) {
	rc, err := v.store.Open(ctx, h)
	if err != nil {
		return fileID{}, err
	}
	defer rc.Close()
	id, ok := identify(rc)
	if _, err := hashBlob(ctx, rc, h, pace); err != nil {
		v.Forget(h)
		return fileID{}, err
	}
	if ok {
		v.mark(h, id)
	}
	return id, nil
}

// Forget drops what is known of h, so that the next Open hashes it.
func (v *Verifier) Forget(h v1.Hash) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.ok, h)
}

func (v *Verifier) verified(h v1.Hash, id fileID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	got, ok := v.ok[h]
	return ok && got == id
}

func (v *Verifier) mark(h v1.Hash, id fileID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ok[h] = id
}

// hashChunk is the size of the reads that hash a blob.
const hashChunk = 256 << 10

// hashBlob reads r to its end and checks that it hashes to h, returning
// the number of bytes read.
func hashBlob(ctx context.Context, r io.Reader, h v1.Hash, pace func(context.Context, int) error) (int64, error) {
	sum := sha256.New()
	buf := make([]byte, hashChunk)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, context.Cause(ctx)
		}
		k, err := r.Read(buf)
		sum.Write(buf[:k])
		n += int64(k)
		if pace != nil && k > 0 {
			if err := pace(ctx, k); err != nil {
				return n, err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("layers: reading blob %s: %w", h, err)
		}
	}
	if got := hashOf(sum); got != h {
		return n, fmt.Errorf("%w: the %d bytes stored as %s hash to %s", ErrDigestMismatch, n, h, got)
	}
	return n, nil
}

// fileID is what identifies the contents of a file without reading it.
type fileID struct {
	size         int64
	mtime, ctime int64 // nanoseconds
	dev, ino     uint64
	version      string // a [Versioned] reader's version
}

// Versioned is implemented by the readers of stores whose blobs have a
// version that changes whenever their bytes are written (an object
// store's ETag). The [Verifier] adds it to the identity that Stat gives,
// which for an object has no device, inode or change time.
type Versioned interface {
	Version() string
}

// identify returns the identity of an open blob, if it has one.
func identify(r io.Reader) (fileID, bool) {
	st, ok := r.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return fileID{}, false
	}
	fi, err := st.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fileID{}, false
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	sysID(fi, &id)
	if v, ok := r.(Versioned); ok {
		id.version = v.Version()
	}
	return id, true
}
