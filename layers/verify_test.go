package layers

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// readAll reads what Open returned and closes it.
func readAll(t testing.TB, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// damage rewrites the blob file of h in place with fn's bytes.
func damage(t testing.TB, s *FSStore, h v1.Hash, fn func([]byte) []byte) {
	t.Helper()
	file := filepath.Join(s.Dir(), "blobs", "sha256", h.Hex)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(fn(b)); err != nil {
		t.Fatal(err)
	}
}

func TestVerifier(t *testing.T) {
	ctx := context.Background()
	s, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3*hashChunk+17)
	rand.Read(data)
	h, _ := Put(ctx, s, data)
	v := NewVerifier(s)

	rc, n, err := v.Open(ctx, h)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Open = %d, %v", n, err)
	}
	if _, ok := rc.(*os.File); !ok {
		t.Errorf("Open returned %T, not the store's *os.File", rc)
	}
	if got := readAll(t, rc); !bytes.Equal(got, data) {
		t.Error("Open read other bytes")
	}

	// Same-length corruption, written in place: found at the next Open.
	damage(t, s, h, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
	if _, _, err := v.Open(ctx, h); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Open of a corrupt blob: %v", err)
	}
	// Truncation, then a mode change that keeps size and bytes: both change
	// the identity; the truncated one is refused, the restored one served.
	damage(t, s, h, func(b []byte) []byte { return data[:1000] })
	if _, _, err := v.Open(ctx, h); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Open of a truncated blob: %v", err)
	}
	damage(t, s, h, func([]byte) []byte { return data })
	if rc, _, err := v.Open(ctx, h); err != nil {
		t.Errorf("Open after repair: %v", err)
	} else {
		rc.Close()
	}

	// Check hashes again whatever Open verified before (a scrub, for bit
	// rot that changes no identity).
	file := filepath.Join(s.Dir(), "blobs", "sha256", h.Hex)
	fi, _ := os.Stat(file)
	damage(t, s, h, func(b []byte) []byte { b[7] ^= 1; return b })
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	paced := 0
	err = v.Check(ctx, h, func(_ context.Context, n int) error { paced += n; return nil })
	if !errors.Is(err, ErrDigestMismatch) || paced < len(data) {
		t.Errorf("Check of a rotten blob: %v (paced %d bytes)", err, paced)
	}
	if _, _, err := v.Open(ctx, h); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Open after Check found the blob rotten: %v", err)
	}
	stop := errors.New("stop")
	if err := v.Check(ctx, h, func(context.Context, int) error { return stop }); err != stop {
		t.Errorf("Check passes on pace's error: %v", err)
	}
	if err := Quarantine(ctx, s, h); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Open(ctx, h); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("Open of a missing blob: %v", err)
	}
}

// TestVerifierConcurrent: concurrent first opens of a blob all get it,
// and only good bytes.
func TestVerifierConcurrent(t *testing.T) {
	ctx := context.Background()
	s, _ := NewFSStore(t.TempDir())
	data := make([]byte, 4<<20)
	rand.Read(data)
	h, _ := Put(ctx, s, data)
	v := NewVerifier(s)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, _, err := v.Open(ctx, h)
			if err != nil {
				t.Error(err)
				return
			}
			if got := readAll(t, rc); !bytes.Equal(got, data) {
				t.Error("other bytes")
			}
		}()
	}
	wg.Wait()
}

// noStat hides a reader's Stat, as a store whose readers report no file
// identity would.
type noStatStore struct{ *FSStore }

func (s noStatStore) Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	rc, err := s.FSStore.Open(ctx, h)
	if err != nil {
		return nil, err
	}
	return struct{ io.ReadSeekCloser }{rc}, nil
}

// TestVerifierNoIdentity: readers without an identity are hashed every
// time, so damage is found whatever it keeps.
func TestVerifierNoIdentity(t *testing.T) {
	ctx := context.Background()
	fs, _ := NewFSStore(t.TempDir())
	data := bytes.Repeat([]byte("x"), 1000)
	h, _ := Put(ctx, fs, data)
	v := NewVerifier(noStatStore{fs})
	rc, n, err := v.Open(ctx, h)
	if err != nil || n != 1000 || !bytes.Equal(readAll(t, rc), data) {
		t.Fatalf("Open = %d, %v", n, err)
	}
	file := filepath.Join(fs.Dir(), "blobs", "sha256", h.Hex)
	fi, _ := os.Stat(file)
	damage(t, fs, h, func(b []byte) []byte { b[0] = 'y'; return b })
	os.Chtimes(file, fi.ModTime(), fi.ModTime())
	if _, _, err := v.Open(ctx, h); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Open of a damaged blob without identity: %v", err)
	}
}

// BenchmarkVerifierOpen measures what verification adds to opening a blob
// for serving: "store" is FSStore.Open alone, "verified" a Verifier.Open
// of a blob verified before (an fstat more), "first" the first Open of a
// 16 MiB blob (a sha256 pass; its MB/s is the hashing rate).
func BenchmarkVerifierOpen(b *testing.B) {
	ctx := context.Background()
	s, _ := NewFSStore(b.TempDir())
	data := make([]byte, 16<<20)
	rand.Read(data)
	h, _ := Put(ctx, s, data)
	v := NewVerifier(s)
	b.Run("store", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rc, err := s.Open(ctx, h)
			if err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("verified", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rc, _, err := v.Open(ctx, h)
			if err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
	b.Run("first", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			v.Forget(h)
			rc, _, err := v.Open(ctx, h)
			if err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}
