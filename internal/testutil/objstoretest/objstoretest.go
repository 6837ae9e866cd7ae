// Package objstoretest is the conformance suite of the object-store
// backends of package layers (layers/s3store, layers/gcsstore): [Run]
// checks against a backend's real service what every backend promises as
// a layers.BlobStore, a layers.Quarantiner and a layers.URLStore, and as
// the images.RecordStore and images.StateStore of a shared store. What
// only one backend has (its uploads, its faults, its signatures, its
// options) stays in that backend's tests, which call Run.
package objstoretest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
)

// Store is what a backend's store is to the suite.
type Store interface {
	layers.BlobStore
	layers.Quarantiner
	layers.URLStore
	images.RecordStore
	images.StateStore
	// Key returns the object key of the blob h.
	Key(h v1.Hash) string
}

// Backend is a backend on its service, for [Run].
type Backend struct {
	// New returns a store on the service with its keys under prefix
	// (each subtest has a prefix of its own) and, if spoolDir is not
	// "", its spool there.
	New func(t *testing.T, prefix, spoolDir string) Store
	// Counted, if not nil, returns a store under prefix, as New does,
	// and a function that tells how many requests it has sent so far.
	Counted func(t *testing.T, prefix string) (Store, func() int64)
	// Keys lists the keys of the objects under prefix, asking the
	// service, not a store.
	Keys func(t *testing.T, prefix string) []string
	// Uploads, if not nil, counts the unfinished uploads under prefix
	// that the service can list (S3's multipart uploads).
	Uploads func(t *testing.T, prefix string) int
	// Put writes the object key behind the stores' back.
	Put func(t *testing.T, key string, data []byte)
	// Get reads the object key behind the stores' back.
	Get func(t *testing.T, key string) []byte
	// Part is the size of the stores' parts (chunks): a blob larger is
	// spooled to disk and uploaded in several requests.
	Part int
	// Tick is how long apart two writes of an object must be for the
	// times a store gives them to differ (S3's are whole seconds).
	Tick time.Duration
}

// Digest is the sha256 digest of b.
func Digest(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Run runs the suite's subtests on b, each on a store of its own under a
// prefix of its own: basic/, bad/, partial/, damaged/, rec/, st/, url/
// and spool/. SpoolFull mounts a tmpfs, so the suite needs root.
func Run(t *testing.T, b Backend) {
	for _, st := range []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"PutStatOpenListDelete", putStatOpenListDelete},
		{"BadDigests", badDigests},
		{"PartialNeverVisible", partialNeverVisible},
		{"DamagedDetected", damagedDetected},
		{"Records", records},
		{"State", state},
		{"URL", urlGet},
		{"SpoolFull", spoolFull},
	} {
		t.Run(st.name, func(t *testing.T) { st.fn(t, b) })
	}
}

// left checks that nothing but the keys want is under prefix, and no
// unfinished upload; after says when.
func (b Backend) left(t *testing.T, prefix, after string, want ...string) {
	t.Helper()
	if ks := b.Keys(t, prefix); !slices.Equal(ks, want) {
		t.Errorf("%s, %s holds %q, want %q", after, prefix, ks, want)
	}
	if b.Uploads != nil {
		if n := b.Uploads(t, prefix); n != 0 {
			t.Errorf("%s, %d unfinished uploads under %s", after, n, prefix)
		}
	}
}

// putStatOpenListDelete: a blob of one part and one of several are
// written, read whole and by ranges, listed and deleted, and the bucket
// holds the one left under its key, nothing else.
func putStatOpenListDelete(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.New(t, "basic/", "")
	small := []byte("hello, blob")
	h, err := layers.Put(ctx, s, small)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Stat(ctx, h); err != nil || n != int64(len(small)) {
		t.Errorf("Stat = %d, %v", n, err)
	}
	if got := testutil.ReadBlob(t, s, h); !bytes.Equal(got, small) {
		t.Errorf("Open: %q", got)
	}
	big := RandomBytes(3*b.Part + 12345) // four parts
	bw, err := s.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(big); off += 100_000 {
		bw.Write(big[off:min(off+100_000, len(big))])
	}
	hb := Digest(big)
	if d, ok := bw.(layers.Digester); !ok || d.Digest() != hb {
		t.Errorf("the writer is no Digester, or its digest is wrong")
	}
	if err := bw.Commit(hb); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ReadBlob(t, s, hb); !bytes.Equal(got, big) {
		t.Errorf("Open of the blob of several parts: %d bytes, not what was written", len(got))
	}
	// Seek and read parts, as http.ServeContent does for Range: near the
	// start, across the end of the first part, inside the second and the
	// third, at the end.
	rc, err := s.Open(ctx, hb)
	if err != nil {
		t.Fatal(err)
	}
	if end, err := rc.Seek(0, io.SeekEnd); err != nil || end != int64(len(big)) {
		t.Errorf("Seek to the end: %d, %v", end, err)
	}
	for _, off := range []int64{5, int64(b.Part) - 500, int64(b.Part) * 7 / 5, 2*int64(b.Part) + 77, int64(len(big)) - 10} {
		if _, err := rc.Seek(off, io.SeekStart); err != nil {
			t.Errorf("Seek to %d: %v", off, err)
		}
		part := make([]byte, min(1000, int64(len(big))-off))
		if _, err := io.ReadFull(rc, part); err != nil || !bytes.Equal(part, big[off:off+int64(len(part))]) {
			t.Errorf("read at %d: %v", off, err)
		}
	}
	if fi, err := rc.(interface{ Stat() (fs.FileInfo, error) }).Stat(); err != nil || fi.Size() != int64(len(big)) || time.Since(fi.ModTime()) > time.Hour || !fi.Mode().IsRegular() {
		t.Errorf("reader's Stat: %v, %v", fi, err)
	}
	if v, ok := rc.(layers.Versioned); !ok || v.Version() == "" || v.Version() == "0" {
		t.Errorf("the reader gives no version")
	}
	rc.Close()
	seen := map[v1.Hash]layers.BlobInfo{}
	if err := s.List(ctx, func(bi layers.BlobInfo) error { seen[bi.Digest] = bi; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[hb].Size != int64(len(big)) || seen[h].Size != int64(len(small)) || time.Since(seen[h].ModTime) > time.Hour {
		t.Errorf("List = %v", seen)
	}
	stop := errors.New("stop")
	if err := s.List(ctx, func(layers.BlobInfo) error { return stop }); err != stop {
		t.Errorf("List returned %v, not fn's error", err)
	}
	if err := s.Delete(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after Delete: %v", err)
	}
	if err := s.Delete(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := s.Open(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("Open after Delete: %v", err)
	}
	if k := s.Key(hb); k != "basic/blobs/sha256/"+hb.Hex {
		t.Errorf("Key = %s", k)
	}
	b.left(t, "basic/", "at the end", "basic/blobs/sha256/"+hb.Hex)
}

// badDigests: every method refuses a bad digest, and a commit a wrong
// one, before sending anything.
func badDigests(t *testing.T, b Backend) {
	// Rejected before any request, where the backend can count them.
	ctx := t.Context()
	var s Store
	sent := func() int64 { return 0 }
	if b.Counted != nil {
		s, sent = b.Counted(t, "bad/")
	} else {
		s = b.New(t, "bad/", "")
	}
	before := sent()
	for _, bad := range []v1.Hash{
		{Algorithm: "sha256", Hex: "../../etc"},
		{Algorithm: "sha512", Hex: strings.Repeat("a", 64)},
		{Algorithm: "sha256", Hex: strings.Repeat("A", 64)},
	} {
		if _, err := s.Stat(ctx, bad); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("Stat(%v): %v", bad, err)
		}
		if _, err := s.Open(ctx, bad); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("Open(%v): %v", bad, err)
		}
		if err := s.Delete(ctx, bad); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("Delete(%v): %v", bad, err)
		}
		if err := s.Quarantine(ctx, bad); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("Quarantine(%v): %v", bad, err)
		}
		if _, err := s.URL(ctx, bad, time.Minute); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("URL(%v): %v", bad, err)
		}
		bw, _ := s.Create(ctx)
		bw.Write([]byte("x"))
		if err := bw.Commit(bad); !errors.Is(err, layers.ErrInvalidDigest) {
			t.Errorf("Commit(%v): %v", bad, err)
		}
	}
	// A wrong digest, small and large: nothing sent either.
	for _, n := range []int{100, 2*b.Part + 1} {
		bw, _ := s.Create(ctx)
		bw.Write(RandomBytes(n))
		if err := bw.Commit(Digest([]byte("other"))); !errors.Is(err, layers.ErrDigestMismatch) {
			t.Errorf("Commit of %d bytes with a wrong digest: %v", n, err)
		}
	}
	if n := sent() - before; n != 0 {
		t.Errorf("%d requests for bad digests", n)
	}
	b.left(t, "bad/", "after bad digests")
}

// partialNeverVisible: a blob being written, committed with a wrong
// digest or cancelled is never visible, nor left in the bucket.
func partialNeverVisible(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.New(t, "partial/", "")
	data := RandomBytes(2*b.Part + b.Part/5)
	h := Digest(data)
	bw, _ := s.Create(ctx)
	bw.Write(data[:2*b.Part]) // two parts written
	if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("Stat during the write: %v", err)
	}
	if ks := b.Keys(t, "partial/blobs/"); len(ks) != 0 {
		t.Errorf("blobs visible during the write: %v", ks)
	}
	bw.Write(data[2*b.Part:])
	// A wrong digest: nothing is stored, nothing is left behind.
	wrong := Digest([]byte("something else"))
	if err := bw.Commit(wrong); !errors.Is(err, layers.ErrDigestMismatch) {
		t.Errorf("Commit with a wrong digest: %v", err)
	}
	for _, d := range []v1.Hash{h, wrong} {
		if _, err := s.Stat(ctx, d); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat of %s after a failed commit: %v", d, err)
		}
	}
	// Cancel after the whole blob is written: nothing either, and no
	// Commit after it.
	bw, _ = s.Create(ctx)
	bw.Write(data)
	if err := bw.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Commit(h); err == nil {
		t.Error("Commit after Cancel succeeded")
	}
	if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("Stat after Cancel: %v", err)
	}
	b.left(t, "partial/", "after a mismatch and a cancel")
}

// damagedDetected: a blob damaged behind the store's back is caught by
// the Verifier, quarantined with its bytes, and replaced by a Put.
func damagedDetected(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.New(t, "damaged/", "")
	data := RandomBytes(2*b.Part + 5)
	h, err := layers.Put(ctx, s, data)
	if err != nil {
		t.Fatal(err)
	}
	v := layers.NewVerifier(s)
	rc, n, err := v.Open(ctx, h)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Verifier.Open of a good blob: %d, %v", n, err)
	}
	rc.Close()
	// Damaged behind the store's back: same size, other bytes, a new
	// version (ETag, generation).
	bad := bytes.Clone(data)
	bad[12345] ^= 0xff
	b.Put(t, s.Key(h), bad)
	if _, _, err := v.Open(ctx, h); !errors.Is(err, layers.ErrDigestMismatch) {
		t.Errorf("Verifier.Open of a damaged blob: %v", err)
	}
	if err := v.Check(ctx, h, nil); !errors.Is(err, layers.ErrDigestMismatch) {
		t.Errorf("Verifier.Check (the scrub) of a damaged blob: %v", err)
	}
	if err := layers.Quarantine(ctx, s, h); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
		t.Errorf("Stat after Quarantine: %v", err)
	}
	q := b.Keys(t, "damaged/quarantine/")
	if len(q) != 1 || !strings.HasPrefix(q[0], "damaged/quarantine/"+h.Hex+".") {
		t.Fatalf("quarantine holds %v", q)
	}
	if qb := b.Get(t, q[0]); !bytes.Equal(qb, bad) {
		t.Errorf("the quarantined object has %d bytes, not the damaged blob's", len(qb))
	}
	// Put replaces a damaged blob.
	b.Put(t, s.Key(h), bad)
	if _, err := layers.Put(ctx, s, data); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(ctx, h, nil); err != nil {
		t.Errorf("after Put replaced the damaged blob: %v", err)
	}
}

// records: image records are written, replaced, listed (past a stray
// object), deleted, stored as index/<key>.json, and bad keys refused.
func records(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.New(t, "rec/", "")
	k1, k2 := Digest([]byte("one")).Hex, Digest([]byte("two")).Hex
	if _, err := s.GetRecord(ctx, k1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetRecord of a missing record: %v", err)
	}
	if err := s.PutRecord(ctx, k1, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, k2, []byte(`{"b":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, k1, []byte(`{"a":3}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetRecord(ctx, k1); err != nil || string(got) != `{"a":3}` {
		t.Errorf("GetRecord = %q, %v", got, err)
	}
	b.Put(t, "rec/index/junk.json", []byte("{}"))
	var keys []string
	if err := s.ListRecords(ctx, func(k string) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{k1, k2}
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("ListRecords = %v, want %v", keys, want)
	}
	if ns := b.Keys(t, "rec/index/"+k2); !slices.Equal(ns, []string{"rec/index/" + k2 + ".json"}) {
		t.Errorf("the record is stored as %v", ns)
	}
	if err := s.DeleteRecord(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRecord(ctx, k1); err != nil {
		t.Errorf("DeleteRecord of a missing record: %v", err)
	}
	if _, err := s.GetRecord(ctx, k1); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetRecord after DeleteRecord: %v", err)
	}
	for _, bad := range []string{"", "../x", strings.Repeat("G", 64)} {
		if err := s.PutRecord(ctx, bad, nil); err == nil {
			t.Errorf("PutRecord(%q) accepted", bad)
		}
	}
}

// state: state objects are written with their times, listed by prefix,
// deleted, stored under state/, and bad names refused.
func state(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.New(t, "st/", "")
	if _, _, err := s.GetState(ctx, "lease/gc"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetState of a missing object: %v", err)
	}
	start := time.Now()
	if err := s.PutState(ctx, "lease/gc", []byte("replica-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "lease/other", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "seen", []byte("y")); err != nil {
		t.Fatal(err)
	}
	data, mod1, err := s.GetState(ctx, "lease/gc")
	if err != nil || string(data) != "replica-1" {
		t.Fatalf("GetState = %q, %v", data, err)
	}
	if d := mod1.Sub(start); d < -2*time.Second || d > time.Minute {
		t.Errorf("GetState's time %v is %v from the write", mod1, d)
	}
	time.Sleep(b.Tick)
	if err := s.PutState(ctx, "lease/gc", []byte("replica-2")); err != nil {
		t.Fatal(err)
	}
	data, mod2, err := s.GetState(ctx, "lease/gc")
	if err != nil || string(data) != "replica-2" || !mod2.After(mod1) {
		t.Errorf("GetState after a second write = %q, %v, %v (first write %v)", data, mod2, err, mod1)
	}
	got := map[string]time.Time{}
	if err := s.ListState(ctx, "lease/", func(name string, mod time.Time) error { got[name] = mod; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["lease/gc"].Equal(mod2) || got["lease/other"].IsZero() {
		t.Errorf("ListState(lease/) = %v; want lease/gc at %v and lease/other", got, mod2)
	}
	all := 0
	s.ListState(ctx, "", func(string, time.Time) error { all++; return nil })
	if all != 3 {
		t.Errorf("ListState(\"\") saw %d objects, want 3", all)
	}
	if ns := b.Keys(t, "st/state/"); len(ns) != 3 || !slices.Contains(ns, "st/state/lease/gc") {
		t.Errorf("state objects stored as %v", ns)
	}
	if err := s.DeleteState(ctx, "lease/gc"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteState(ctx, "lease/gc"); err != nil {
		t.Errorf("DeleteState of a missing object: %v", err)
	}
	if _, _, err := s.GetState(ctx, "lease/gc"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetState after DeleteState: %v", err)
	}
	for _, bad := range []string{"", "/abs", "a//b", "../up", "a/./b", "nl\nx", "sp ace", "é", "trailing/", strings.Repeat("x", 600)} {
		if err := s.PutState(ctx, bad, nil); err == nil {
			t.Errorf("PutState(%q) accepted", bad)
		}
		if _, _, err := s.GetState(ctx, bad); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("GetState(%q): %v, want a bad-name error", bad, err)
		}
	}
}

// urlGet: the store's URL of a blob serves it to a plain GET, whole and
// by Range (the backends' own tests check how the URLs are signed and
// when they expire).
func urlGet(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.New(t, "url/", "")
	data := RandomBytes(b.Part / 4)
	h, err := layers.Put(ctx, s, data)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.URL(ctx, h, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r := testutil.Do(t, http.DefaultClient, "GET", u, map[string]string{"Range": "bytes=100-199"}); r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[100:200]) {
		t.Errorf("GET of the URL %s with Range: %d, %d bytes", u, r.Status, len(r.Body))
	}
	if r := testutil.Do(t, http.DefaultClient, "GET", u, nil); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Errorf("GET of the URL %s: %d, %d bytes", u, r.Status, len(r.Body))
	}
}

// spoolFull: a blob larger than one part is spooled to local disk, by a
// file without a name; with the spool's disk full the write fails with the
// reason, nothing reaches the bucket, and the space comes back.
func spoolFull(t *testing.T, b Backend) {
	ctx := t.Context()
	spool := 2*b.Part + 4<<20 // room for a blob of two parts
	dir := testutil.Tmpfs(t, spool)
	s := b.New(t, "spool/", dir)
	data := RandomBytes(spool + 4<<20)
	bw, _ := s.Create(ctx)
	var werr error
	for off := 0; off < len(data) && werr == nil; off += 1 << 20 {
		_, werr = bw.Write(data[off:min(off+1<<20, len(data))])
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("the spool file has a name in %s: %v", dir, ents)
		}
	}
	if werr == nil || !strings.Contains(werr.Error(), "no space left on device") || !strings.Contains(werr.Error(), "spool") {
		t.Errorf("Write of %d MiB to a %d MiB spool: %v, want a spool error saying no space", len(data)>>20, spool>>20, werr)
	}
	if err := bw.Commit(Digest(data)); err == nil {
		t.Error("Commit after a failed write succeeded")
	}
	b.left(t, "spool/", "after a failed spool")
	// The space is back: a blob that fits goes through.
	fits := data[:spool-2<<20]
	h, err := layers.Put(ctx, s, fits)
	if err != nil {
		t.Fatalf("Put of %d MiB after the failure: %v", len(fits)>>20, err)
	}
	if !bytes.Equal(testutil.ReadBlob(t, s, h), fits) {
		t.Errorf("the %d MiB blob reads back wrong", len(fits)>>20)
	}
}
