package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestFSStore(t *testing.T) {
	ctx := context.Background()
	s, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"schemaVersion":2}`)
	want := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(data))}
	if _, err := s.Stat(ctx, want); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("Stat before Put: %v, want ErrBlobUnknown", err)
	}
	if _, err := s.Open(ctx, want); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("Open before Put: %v, want ErrBlobUnknown", err)
	}
	h, err := Put(ctx, s, data)
	if err != nil || h != want {
		t.Fatalf("Put = %v, %v; want %v", h, err, want)
	}
	if n, err := s.Stat(ctx, h); err != nil || n != int64(len(data)) {
		t.Errorf("Stat = %d, %v", n, err)
	}
	rc, err := s.Open(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rc.(*os.File); !ok {
		t.Errorf("Open returned %T, want *os.File", rc)
	}
	if _, err := rc.Seek(2, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data[2:]) {
		t.Errorf("read after seek: %q", got)
	}
	if _, err := Put(ctx, s, data); err != nil {
		t.Errorf("second Put: %v", err)
	}

	// A wrong digest stores nothing.
	w, err := s.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("other bytes"))
	if err := w.Commit(want); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Commit with a wrong digest: %v, want ErrDigestMismatch", err)
	}
	other := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256([]byte("other bytes")))}
	if _, err := s.Stat(ctx, other); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("a blob that failed verification is visible: %v", err)
	}
	// An unfinished blob is invisible, and Cancel removes it.
	w, _ = s.Create(ctx)
	w.Write([]byte("other bytes"))
	if _, err := s.Stat(ctx, other); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("an uncommitted blob is visible: %v", err)
	}
	if err := w.Cancel(); err != nil {
		t.Fatal(err)
	}
	if es, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(es) != 0 {
		t.Errorf("temporary files left: %d", len(es))
	}
	if es, _ := os.ReadDir(filepath.Join(s.Dir(), "blobs", "sha256")); len(es) != 1 {
		t.Errorf("blobs: %d, want 1", len(es))
	}
}

// badDigests must be rejected before they reach the filesystem.
var badDigests = []string{
	"",
	"sha256:",
	"sha256:../../../../etc/passwd",
	"sha256:" + strings.Repeat("0", 62) + "/x",
	"sha256:" + strings.Repeat("A", 64),
	"sha256:" + strings.Repeat("a", 63),
	"sha256:" + strings.Repeat("a", 65),
	"sha512:" + strings.Repeat("a", 128),
	"md5:" + strings.Repeat("a", 32),
	"SHA256:" + strings.Repeat("a", 64),
	"sha256:" + strings.Repeat("g", 64),
	strings.Repeat("a", 64),
	"sha256:" + strings.Repeat("a", 63) + "\x00",
}

func TestDigestValidation(t *testing.T) {
	ctx := context.Background()
	s, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	if h, err := ParseDigest(good); err != nil || h.String() != good {
		t.Errorf("ParseDigest(%q) = %v, %v", good, h, err)
	}
	for _, d := range badDigests {
		if h, err := ParseDigest(d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("ParseDigest(%q) = %v, %v; want ErrInvalidDigest", d, h, err)
		}
		alg, hex, _ := strings.Cut(d, ":")
		h := v1.Hash{Algorithm: alg, Hex: hex}
		if _, err := s.Stat(ctx, h); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Stat(%q): %v, want ErrInvalidDigest", d, err)
		}
		if _, err := s.Open(ctx, h); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Open(%q): %v, want ErrInvalidDigest", d, err)
		}
		w, _ := s.Create(ctx)
		if err := w.Commit(h); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Commit(%q): %v, want ErrInvalidDigest", d, err)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	for _, d := range badDigests {
		f.Add(d)
	}
	f.Add("sha256:" + strings.Repeat("0123456789abcdef", 4))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseDigest(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDigest) {
				t.Fatalf("error %v does not wrap ErrInvalidDigest", err)
			}
			return
		}
		if h.String() != s || len(h.Hex) != 64 || strings.ContainsAny(s, "/.\\\x00ABCDEF") {
			t.Fatalf("ParseDigest(%q) accepted %v", s, h)
		}
		if _, err := v1.NewHash(s); err != nil {
			t.Fatalf("accepted %q that v1.NewHash rejects: %v", s, err)
		}
	})
}
