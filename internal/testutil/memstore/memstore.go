// Package memstore is an in-memory layers.BlobStore for tests, with ways to
// damage what it holds (truncate, corrupt or lose a blob, fail every call),
// so that tests can check what a server does when its storage lets it
// down. It is a layers.Quarantiner too, and keeps what it quarantines for
// tests to look at.
//
// It is a package of its own, not part of testutil, because it imports
// layers: the in-package tests of layers use testutil.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

// Store is a layers.BlobStore that keeps blobs in memory. It is safe for
// concurrent use, and the faults it injects never disturb a reader already
// open: they replace a blob's bytes, they do not change them in place.
type Store struct {
	mu          sync.Mutex
	blobs       map[v1.Hash][]byte
	mod         map[v1.Hash]time.Time // when each blob was last committed or put
	quarantined map[v1.Hash][]byte
	err         error // returned by every call, when set (Fail)
}

var (
	_ layers.BlobStore   = (*Store)(nil)
	_ layers.Quarantiner = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{blobs: map[v1.Hash][]byte{}, mod: map[v1.Hash]time.Time{}, quarantined: map[v1.Hash][]byte{}}
}

// Stat returns the size of the blob h, or an error wrapping
// layers.ErrBlobUnknown.
func (s *Store) Stat(_ context.Context, h v1.Hash) (int64, error) {
	b, err := s.get(h)
	return int64(len(b)), err
}

// Open returns the bytes of the blob h, or an error wrapping
// layers.ErrBlobUnknown.
func (s *Store) Open(_ context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	b, err := s.get(h)
	if err != nil {
		return nil, err
	}
	return nopCloser{bytes.NewReader(b)}, nil
}

func (s *Store) get(h v1.Hash) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	b, ok := s.blobs[h]
	if !ok {
		return nil, fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	return b, nil
}

// Create starts a new blob, stored when its writer commits it under the
// sha256 of what was written.
func (s *Store) Create(context.Context) (layers.BlobWriter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return &writer{s: s}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

type writer struct {
	s        *Store
	buf      bytes.Buffer
	canceled bool
}

func (w *writer) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *writer) Cancel() error {
	w.canceled = true
	w.buf.Reset()
	return nil
}

// Commit stores the bytes written under h when they hash to h, replacing a
// blob already stored under h.
func (w *writer) Commit(h v1.Hash) error {
	if w.canceled {
		return errors.New("memstore: commit after cancel")
	}
	got, _, err := v1.SHA256(bytes.NewReader(w.buf.Bytes()))
	if err != nil {
		return err
	}
	if got != h {
		return fmt.Errorf("%w: the bytes written hash to %s, not %s", layers.ErrDigestMismatch, got, h)
	}
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.err != nil {
		return w.s.err
	}
	w.s.blobs[h] = bytes.Clone(w.buf.Bytes())
	w.s.mod[h] = time.Now()
	return nil
}

// List calls fn for every blob held.
func (s *Store) List(ctx context.Context, fn func(layers.BlobInfo) error) error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return s.err
	}
	infos := make([]layers.BlobInfo, 0, len(s.blobs))
	for h, b := range s.blobs {
		infos = append(infos, layers.BlobInfo{Digest: h, Size: int64(len(b)), ModTime: s.mod[h]})
	}
	s.mu.Unlock()
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the blob h, or returns an error wrapping
// layers.ErrBlobUnknown.
func (s *Store) Delete(_ context.Context, h v1.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, ok := s.blobs[h]; !ok {
		return fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	delete(s.blobs, h)
	delete(s.mod, h)
	return nil
}

// Quarantine moves the blob h aside, where [Store.Quarantined] finds it.
func (s *Store) Quarantine(_ context.Context, h v1.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	b, ok := s.blobs[h]
	if !ok {
		return fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	s.quarantined[h] = b
	delete(s.blobs, h)
	delete(s.mod, h)
	return nil
}

// Quarantined returns the bytes last quarantined under h, and whether
// there are any.
func (s *Store) Quarantined(h v1.Hash) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.quarantined[h]
	return bytes.Clone(b), ok
}

// Len returns the number of blobs held.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blobs)
}

// Digests returns the digests of the blobs held, sorted.
func (s *Store) Digests() []v1.Hash {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]v1.Hash, 0, len(s.blobs))
	for h := range s.blobs {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
	return hs
}

// Blob returns a copy of the bytes held under h, whatever faults were
// injected, and whether there is a blob.
func (s *Store) Blob(h v1.Hash) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[h]
	return bytes.Clone(b), ok
}

// Put stores b under h as it is, without checking that it hashes to h:
// a blob a broken store returns for h.
func (s *Store) Put(h v1.Hash, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[h] = bytes.Clone(b)
	s.mod[h] = time.Now()
}

// SetModTime sets the time List reports for the blob h, as if it had been
// committed then.
func (s *Store) SetModTime(h v1.Hash, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.blobs[h]; ok {
		s.mod[h] = t
	}
}

// Lose removes the blob h, as if the storage had lost it, and reports
// whether there was one.
func (s *Store) Lose(h v1.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[h]
	delete(s.blobs, h)
	delete(s.mod, h)
	return ok
}

// Truncate keeps the first n bytes of the blob h, as a write cut short
// would, and reports whether there was a blob longer than n.
func (s *Store) Truncate(h v1.Hash, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[h]
	if !ok || len(b) <= n || n < 0 {
		return false
	}
	s.blobs[h] = bytes.Clone(b[:n])
	return true
}

// Corrupt flips one bit of the blob h, in its middle byte, keeping its
// size, as a bad disk would, and reports whether there was a non-empty
// blob.
func (s *Store) Corrupt(h v1.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[h]
	if !ok || len(b) == 0 {
		return false
	}
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0x01
	s.blobs[h] = b
	return true
}

// Fail makes every later Stat, Open, Create, Commit, List, Delete and
// Quarantine return err, as an
// unavailable storage would, until Fail(nil).
func (s *Store) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}
