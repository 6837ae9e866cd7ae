package layers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/atomicfile"
)

// FSStore is a [BlobStore] in a directory of the local filesystem:
//
//	dir/blobs/sha256/<hex>   committed blobs, read-only (0444)
//	dir/tmp/blob-*           blobs being written
//
// A blob is written to a temporary file in dir/tmp (the same filesystem),
// hashed as it is written, fsync'd, checked against its digest and renamed
// into place, so a blob is visible only once all of its bytes are on disk.
// A process killed while writing leaves at most a temporary file, which is
// never served; [NewFSStore] removes such files once they are a day old.
//
// Several processes may share one directory.
type FSStore struct {
	dir string
}

var _ BlobStore = (*FSStore)(nil)

// staleTemp is the age after which NewFSStore removes an abandoned
// temporary file. It is long enough that no live writer is affected.
const staleTemp = 24 * time.Hour

// NewFSStore returns a store in dir, creating the directories it needs.
func NewFSStore(dir string) (*FSStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("layers: blob store: %w", err)
	}
	s := &FSStore{dir: abs}
	for _, d := range []string{s.blobDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("layers: blob store: %w", err)
		}
	}
	atomicfile.RemoveStale(s.tmpDir(), "blob-", staleTemp)
	return s, nil
}

// Dir returns the store's directory.
func (s *FSStore) Dir() string { return s.dir }

func (s *FSStore) blobDir() string { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *FSStore) tmpDir() string  { return filepath.Join(s.dir, "tmp") }

// path returns the file holding h, after validating h.
func (s *FSStore) path(h v1.Hash) (string, error) {
	if err := ValidateDigest(h); err != nil {
		return "", err
	}
	return filepath.Join(s.blobDir(), h.Hex), nil
}

// Stat returns the size of the blob h.
func (s *FSStore) Stat(ctx context.Context, h v1.Hash) (int64, error) {
	p, err := s.path(h)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrBlobUnknown, h)
	}
	if err != nil {
		return 0, fmt.Errorf("layers: stat blob: %w", err)
	}
	return fi.Size(), nil
}

// Open returns the blob h as an *os.File.
func (s *FSStore) Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	p, err := s.path(h)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrBlobUnknown, h)
	}
	if err != nil {
		return nil, fmt.Errorf("layers: open blob: %w", err)
	}
	return f, nil
}

// Create starts a new blob in a temporary file.
func (s *FSStore) Create(ctx context.Context) (BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.tmpDir(), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("layers: create blob: %w", err)
	}
	return &fsBlobWriter{s: s, f: f, h: sha256.New()}, nil
}

// fsBlobWriter writes one blob of an FSStore.
type fsBlobWriter struct {
	s    *FSStore
	f    *os.File
	h    hash.Hash
	n    int64
	err  error // sticky write error
	done bool  // committed or cancelled
	sync syncer
}

func (w *fsBlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("layers: write to a finished blob")
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("layers: write blob: %w", err)
		return n, w.err
	}
	w.sync.wrote(w.f, w.n)
	return n, nil
}

// Commit verifies the bytes written against h and renames them into place.
func (w *fsBlobWriter) Commit(h v1.Hash) error {
	if w.done {
		return errors.New("layers: commit of a finished blob")
	}
	final, err := w.s.path(h)
	if err != nil {
		w.Cancel()
		return err
	}
	if w.err != nil {
		w.Cancel()
		return w.err
	}
	if got := fmt.Sprintf("%x", w.h.Sum(nil)); got != h.Hex {
		w.Cancel()
		return fmt.Errorf("%w: wrote sha256:%s, want %s", ErrDigestMismatch, got, h)
	}
	if _, err := os.Stat(final); err == nil {
		return w.Cancel() // keep the existing blob
	}
	if err := w.f.Chmod(0o444); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), final); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	w.done = true
	atomicfile.SyncDir(filepath.Dir(final))
	return nil
}

// Cancel removes the temporary file.
func (w *fsBlobWriter) Cancel() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("layers: cancel blob: %w", err)
	}
	return nil
}

// Put stores data as a blob and returns its digest. It is meant for small
// blobs such as image configs and manifests; data already in s is not
// written again.
func Put(ctx context.Context, s BlobStore, data []byte) (v1.Hash, error) {
	h := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(data))}
	if n, err := s.Stat(ctx, h); err == nil && n == int64(len(data)) {
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
