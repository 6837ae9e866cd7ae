package memstore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
)

func put(t *testing.T, s *Store, data string) v1.Hash {
	t.Helper()
	h, err := layers.Put(context.Background(), s, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func read(t *testing.T, s *Store, h v1.Hash) ([]byte, error) {
	t.Helper()
	rc, err := s.Open(context.Background(), h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	s := New()
	h := put(t, s, "hello, blob")
	if n, err := s.Stat(ctx, h); err != nil || n != 11 {
		t.Errorf("Stat = %d, %v", n, err)
	}
	if b, err := read(t, s, h); err != nil || string(b) != "hello, blob" {
		t.Errorf("Open: %q, %v", b, err)
	}
	if again := put(t, s, "hello, blob"); again != h || s.Len() != 1 {
		t.Errorf("storing a blob again: %s, %d blobs", again, s.Len())
	}
	other := put(t, s, "other")
	if ds := s.Digests(); len(ds) != 2 || ds[0].String() > ds[1].String() {
		t.Errorf("Digests = %v", ds)
	}
	missing, _ := v1.NewHash("sha256:" + string(bytes.Repeat([]byte("0"), 64)))
	if _, err := s.Stat(ctx, missing); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("Stat of a missing blob: %v", err)
	}
	if _, err := s.Open(ctx, missing); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("Open of a missing blob: %v", err)
	}

	// A wrong digest stores nothing; neither does a cancelled write.
	w, _ := s.Create(ctx)
	w.Write([]byte("x"))
	if err := w.Commit(h); !errors.Is(err, layers.ErrDigestMismatch) {
		t.Errorf("Commit under the wrong digest: %v", err)
	}
	w, _ = s.Create(ctx)
	w.Write([]byte("y"))
	w.Cancel()
	yh, _, _ := v1.SHA256(bytes.NewReader([]byte("y")))
	if err := w.Commit(yh); err == nil || s.Len() != 2 {
		t.Errorf("Commit after Cancel: %v, %d blobs", err, s.Len())
	}

	// Faults.
	rc, _ := s.Open(ctx, h) // opened before the damage: reads the old bytes
	if !s.Corrupt(h) {
		t.Fatal("Corrupt found no blob")
	}
	if b, _ := read(t, s, h); len(b) != 11 || string(b) == "hello, blob" {
		t.Errorf("after Corrupt: %q", b)
	}
	if b, _ := io.ReadAll(rc); string(b) != "hello, blob" {
		t.Errorf("a reader opened before Corrupt read %q", b)
	}
	if !s.Truncate(h, 4) || s.Truncate(h, 4) {
		t.Error("Truncate to 4 bytes did not report the blob exactly once")
	}
	if n, _ := s.Stat(ctx, h); n != 4 {
		t.Errorf("after Truncate: %d bytes", n)
	}
	if b, ok := s.Blob(h); !ok || len(b) != 4 {
		t.Errorf("Blob after Truncate: %q %v", b, ok)
	}
	s.Put(h, []byte("anything"))
	if b, _ := read(t, s, h); string(b) != "anything" {
		t.Errorf("after Put: %q", b)
	}
	if !s.Lose(h) || s.Lose(h) {
		t.Error("Lose did not report the blob exactly once")
	}
	if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("after Lose: %v", err)
	}
	down := errors.New("storage down")
	s.Fail(down)
	if _, err := s.Stat(ctx, other); !errors.Is(err, down) {
		t.Errorf("Stat while failing: %v", err)
	}
	if _, err := s.Open(ctx, other); !errors.Is(err, down) {
		t.Errorf("Open while failing: %v", err)
	}
	if _, err := s.Create(ctx); !errors.Is(err, down) {
		t.Errorf("Create while failing: %v", err)
	}
	if err := s.List(ctx, func(layers.BlobInfo) error { return nil }); !errors.Is(err, down) {
		t.Errorf("List while failing: %v", err)
	}
	s.Fail(nil)
	if b, err := read(t, s, other); err != nil || string(b) != "other" {
		t.Errorf("after Fail(nil): %q %v", b, err)
	}
}

// TestStoreGC: what a collector uses: List, Delete, modification times,
// and Quarantine (through layers.Quarantine).
func TestStoreGC(t *testing.T) {
	ctx := context.Background()
	s := New()
	a, b := put(t, s, "a"), put(t, s, "bb")
	old := time.Now().Add(-time.Hour)
	s.SetModTime(a, old)
	got := map[v1.Hash]layers.BlobInfo{}
	if err := s.List(ctx, func(i layers.BlobInfo) error { got[i.Digest] = i; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[a].ModTime.Equal(old) || got[b].Size != 2 || time.Since(got[b].ModTime) > time.Minute {
		t.Errorf("List: %+v", got)
	}
	stop := errors.New("stop")
	if err := s.List(ctx, func(layers.BlobInfo) error { return stop }); err != stop {
		t.Errorf("List passes on fn's error: %v", err)
	}
	if err := s.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("second Delete: %v", err)
	}
	if err := layers.Quarantine(ctx, s, b); err != nil {
		t.Fatal(err)
	}
	if q, ok := s.Quarantined(b); !ok || string(q) != "bb" || s.Len() != 0 {
		t.Errorf("Quarantined: %q %v, %d blobs left", q, ok, s.Len())
	}
	if err := layers.Quarantine(ctx, s, b); err != nil {
		t.Errorf("quarantining a blob that is gone: %v", err)
	}
	// Commit replaces a damaged blob.
	s.Put(a, []byte("not a"))
	if again := put(t, s, "a"); again != a {
		t.Fatal(again)
	}
	if got, _ := s.Blob(a); string(got) != "a" {
		t.Errorf("Put over a damaged blob left %q", got)
	}
}

// TestStoreWithWriteTarLayer: a layer written by package layers reads back
// whole.
func TestStoreWithWriteTarLayer(t *testing.T) {
	s := New()
	d, err := layers.WriteTarLayer(context.Background(), s, 0, func(tw *tar.Writer) error {
		if err := tw.WriteHeader(&tar.Header{Name: "etc/motd", Mode: 0o444, Size: 6, Typeflag: tar.TypeReg, ModTime: layers.Epoch}); err != nil {
			return err
		}
		_, err := tw.Write([]byte("hello\n"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Stat(context.Background(), d.Digest); err != nil || n != d.Size {
		t.Errorf("layer %s: size %d (want %d), %v", d.Digest, n, d.Size, err)
	}
	blob, _ := s.Blob(d.Digest)
	if es := testutil.ReadLayer(t, blob); len(es) != 1 || es[0].Header.Name != "etc/motd" || string(es[0].Body) != "hello\n" {
		t.Errorf("layer entries: %+v", es)
	}
}
