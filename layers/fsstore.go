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
//	dir/blobs/sha256/<hex>          committed blobs, read-only (0444)
//	dir/tmp/blob-*                  blobs being written
//	dir/quarantine/<hex>.<time>     damaged blobs set aside ([FSStore.Quarantine])
//
// A blob is written to a temporary file in dir/tmp (the same filesystem),
// hashed as it is written, fsync'd, checked against its digest and renamed
// into place, so a blob is visible only once all of its bytes are on disk.
// A writer holds an flock on its temporary file (see package atomicfile);
// [NewFSStore] removes the temporary files nobody holds, which a killed
// process left behind, and quarantined blobs older than a week.
//
// Several processes may share one directory.
type FSStore struct {
	dir string
}

var (
	_ BlobStore   = (*FSStore)(nil)
	_ Quarantiner = (*FSStore)(nil)
)

// quarantineAge is how long a quarantined blob is kept.
const quarantineAge = 7 * 24 * time.Hour

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
	atomicfile.RemoveStale(s.tmpDir(), "blob-")
	s.purgeQuarantine(quarantineAge)
	return s, nil
}

// Dir returns the store's directory.
func (s *FSStore) Dir() string { return s.dir }

func (s *FSStore) blobDir() string { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *FSStore) tmpDir() string  { return filepath.Join(s.dir, "tmp") }
func (s *FSStore) quarantineDir() string {
	return filepath.Join(s.dir, "quarantine")
}

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
	f, err := atomicfile.CreateTemp(s.tmpDir(), "blob-")
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
	if err := w.f.Chmod(0o444); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	// Rename before Close: the temporary file's lock keeps RemoveStale of
	// other processes away until it is in place. A blob already there is
	// replaced, since these bytes are verified and the stored ones may
	// not be.
	if err := os.Rename(w.f.Name(), final); err != nil {
		w.Cancel()
		return fmt.Errorf("layers: commit blob: %w", err)
	}
	w.done = true
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("layers: commit blob: %w", err)
	}
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

// List calls fn for every committed blob.
func (s *FSStore) List(ctx context.Context, fn func(BlobInfo) error) error {
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		return fmt.Errorf("layers: list blobs: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if ValidateDigest(h) != nil || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		if err := fn(BlobInfo{Digest: h, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the blob h. Readers that have it open keep reading the
// bytes until they close it.
func (s *FSStore) Delete(ctx context.Context, h v1.Hash) error {
	p, err := s.path(h)
	if err != nil {
		return err
	}
	err = os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrBlobUnknown, h)
	}
	if err != nil {
		return fmt.Errorf("layers: delete blob: %w", err)
	}
	return nil
}

// Quarantine moves the blob h to dir/quarantine, where it stays for a
// week.
func (s *FSStore) Quarantine(ctx context.Context, h v1.Hash) error {
	p, err := s.path(h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.quarantineDir(), 0o755); err != nil {
		return fmt.Errorf("layers: quarantine: %w", err)
	}
	err = os.Rename(p, filepath.Join(s.quarantineDir(), fmt.Sprintf("%s.%d", h.Hex, time.Now().UnixNano())))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrBlobUnknown, h)
	}
	if err != nil {
		return fmt.Errorf("layers: quarantine: %w", err)
	}
	return nil
}

// purgeQuarantine removes quarantined blobs set aside more than age ago.
func (s *FSStore) purgeQuarantine(age time.Duration) {
	ents, _ := os.ReadDir(s.quarantineDir())
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(filepath.Join(s.quarantineDir(), e.Name()))
		}
	}
}
