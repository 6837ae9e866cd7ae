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
	"time"

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

// TestFSStoreReplacesDamaged: a commit or a Put over a damaged blob (cut
// short, or the same length with other bytes) replaces it.
func TestFSStoreReplacesDamaged(t *testing.T) {
	ctx := context.Background()
	s, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("nixery "), 1000)
	h, err := Put(ctx, s, data)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.Dir(), "blobs", "sha256", h.Hex)
	for name, damage := range map[string]func() error{
		"truncated": func() error { return os.WriteFile(file, data[:100], 0o444) },
		"corrupt": func() error {
			b := bytes.Clone(data)
			b[len(b)/2] ^= 1
			return os.WriteFile(file, b, 0o444)
		},
	} {
		for _, write := range []string{"Put", "Commit"} {
			os.Chmod(file, 0o644)
			if err := damage(); err != nil {
				t.Fatal(err)
			}
			if write == "Put" {
				_, err = Put(ctx, s, data)
			} else {
				w, _ := s.Create(ctx)
				w.Write(data)
				err = w.Commit(h)
			}
			if err != nil {
				t.Fatalf("%s over a %s blob: %v", write, name, err)
			}
			if got, _ := os.ReadFile(file); !bytes.Equal(got, data) {
				t.Errorf("%s over a %s blob left %d bytes that differ", write, name, len(got))
			}
		}
	}
}

// TestFSStoreGC: List, Delete and Quarantine.
func TestFSStoreGC(t *testing.T) {
	ctx := context.Background()
	s, err := NewFSStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Put(ctx, s, []byte("a"))
	b, _ := Put(ctx, s, []byte("bb"))
	os.WriteFile(filepath.Join(s.Dir(), "blobs", "sha256", "not-a-digest"), nil, 0o644)
	got := map[v1.Hash]BlobInfo{}
	if err := s.List(ctx, func(i BlobInfo) error { got[i.Digest] = i; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[b].Size != 2 || time.Since(got[a].ModTime) > time.Minute {
		t.Errorf("List: %+v", got)
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("Delete of a deleted blob: %v", err)
	}
	if err := Quarantine(ctx, s, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, b); !errors.Is(err, ErrBlobUnknown) {
		t.Errorf("a quarantined blob is still there: %v", err)
	}
	q, _ := filepath.Glob(filepath.Join(s.Dir(), "quarantine", b.Hex+".*"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %q", q)
	}
	if data, _ := os.ReadFile(q[0]); string(data) != "bb" {
		t.Errorf("quarantined bytes %q", data)
	}
	if err := Quarantine(ctx, s, b); err != nil {
		t.Errorf("quarantining a blob that is gone: %v", err)
	}
	// A week later the quarantine is emptied when a store opens.
	old := time.Now().Add(-8 * 24 * time.Hour)
	os.Chtimes(q[0], old, old)
	if _, err := NewFSStore(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a quarantined blob older than a week is kept: %v", err)
	}
}

// TestFSStoreTempFiles: a new store (as another process starting on the
// same directory) removes the temporary files of dead writers, never one
// being written.
func TestFSStoreTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := NewFSStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, "tmp", "blob-dead")
	os.WriteFile(dead, []byte("partial"), 0o644)
	w, _ := s.Create(ctx)
	w.Write([]byte("live"))
	if _, err := NewFSStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead writer's temporary file survived: %v", err)
	}
	h := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256([]byte("live")))}
	if err := w.Commit(h); err != nil {
		t.Fatalf("a live writer could not commit after another store started: %v", err)
	}
	if n, err := s.Stat(ctx, h); err != nil || n != 4 {
		t.Errorf("Stat = %d, %v", n, err)
	}
}
