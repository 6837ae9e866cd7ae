package gcsstore_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/gcsstore"
)

// The capabilities a shared store of package images has.
var (
	_ layers.BlobStore   = (*gcsstore.Store)(nil)
	_ layers.URLStore    = (*gcsstore.Store)(nil)
	_ layers.Quarantiner = (*gcsstore.Store)(nil)
	_ images.RecordStore = (*gcsstore.Store)(nil)
	_ images.StateStore  = (*gcsstore.Store)(nil)
)

func digest(b []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

const chunk = 1 << 20 // the tests' chunk size: blobs above 1 MiB take several

func newStore(t *testing.T, g *testutil.FakeGCS, prefix string, mod ...func(*gcsstore.Options)) *gcsstore.Store {
	t.Helper()
	o := gcsstore.Options{Bucket: g.Bucket, EmulatorHost: g.Host, Prefix: prefix, ChunkSize: chunk}
	for _, m := range mod {
		m(&o)
	}
	s, err := gcsstore.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readAll(t *testing.T, s layers.BlobStore, h v1.Hash) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// names lists the objects under prefix straight from the emulator's JSON
// API, not through the store.
func names(t *testing.T, g *testutil.FakeGCS, prefix string) []string {
	t.Helper()
	resp, err := http.Get(g.Endpoint() + "/storage/v1/b/" + g.Bucket + "/o?prefix=" + url.QueryEscape(prefix))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, it := range l.Items {
		ns = append(ns, it.Name)
	}
	return ns
}

// rawPut writes an object behind the store's back.
func rawPut(t *testing.T, g *testutil.FakeGCS, name string, data []byte) {
	t.Helper()
	resp, err := http.Post(g.Endpoint()+"/upload/storage/v1/b/"+g.Bucket+"/o?uploadType=media&name="+url.QueryEscape(name), "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("raw upload of %s: %s", name, resp.Status)
	}
}

// counting counts the requests sent through it, and can cancel a context
// after the n-th chunk of a resumable upload has gone.
type counting struct {
	n       atomic.Int64
	chunks  atomic.Int64
	mu      sync.Mutex
	cancel  context.CancelFunc
	cancelN int64
}

func (c *counting) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if req.Method == "PUT" && req.Header.Get("Content-Range") != "" {
		n := c.chunks.Add(1)
		c.mu.Lock()
		if c.cancel != nil && n == c.cancelN {
			c.cancel()
		}
		c.mu.Unlock()
	}
	return resp, err
}

// halving sends the first half of every non-final chunk of a resumable
// upload on to the server, as if the rest were lost on the way.
type halving struct{ halved atomic.Int64 }

func (h *halving) RoundTrip(req *http.Request) (*http.Response, error) {
	var start, end, total int64
	if req.Method != "PUT" {
		return http.DefaultTransport.RoundTrip(req)
	}
	if n, _ := fmt.Sscanf(req.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total); n != 3 || end+1 >= total || end-start < 2 {
		return http.DefaultTransport.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	half := int64(len(body)) / 2
	r2 := req.Clone(req.Context())
	r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(body[:half])), half
	r2.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+half-1, total))
	h.halved.Add(1)
	return http.DefaultTransport.RoundTrip(r2)
}

// verifyV4 checks the signature of a V4-signed GET URL (GOOG4-RSA-SHA256,
// only the host header signed, UNSIGNED-PAYLOAD) with pub, rebuilding the
// canonical request from the URL as Google documents it: the method, the
// path as escaped in the URL, the query without the signature (its
// parameters sorted), the host header, the signed headers, the payload.
func verifyV4(pub *rsa.PublicKey, raw string) error {
	rest, ok := strings.CutPrefix(raw, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(raw, "https://")
	}
	if !ok {
		return fmt.Errorf("not an http(s) URL: %s", raw)
	}
	host, rest, _ := strings.Cut(rest, "/")
	path, query, _ := strings.Cut(rest, "?")
	var params []string
	var sig, date, cred string
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "x-goog-signature":
			sig = v
			continue
		case "x-goog-date":
			date = v
		case "x-goog-credential":
			cred, _ = url.QueryUnescape(v)
		}
		params = append(params, kv)
	}
	slices.Sort(params)
	_, scope, _ := strings.Cut(cred, "/")
	if sig == "" || date == "" || scope == "" {
		return fmt.Errorf("no signature, date or credential scope in %s", raw)
	}
	canonical := "GET\n/" + path + "\n" + strings.Join(params, "&") + "\nhost:" + host + "\n\nhost\nUNSIGNED-PAYLOAD"
	cs := sha256.Sum256([]byte(canonical))
	toSign := "GOOG4-RSA-SHA256\n" + date + "\n" + scope + "\n" + hex.EncodeToString(cs[:])
	ds := sha256.Sum256([]byte(toSign))
	sb, err := hex.DecodeString(sig)
	if err != nil {
		return err
	}
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, ds[:], sb)
}

// TestV4Verifier: verifyV4 accepts the URLs that Google's gcloud signed
// (testdata/README.md), and refuses them altered.
func TestV4Verifier(t *testing.T) {
	b, err := os.ReadFile("testdata/gcloud-signer.pub.pem")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.(*rsa.PublicKey)
	urls, err := os.ReadFile("testdata/gcloud-signed-urls.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(urls))
	if len(lines) != 2 {
		t.Fatalf("%d URLs in testdata, want 2", len(lines))
	}
	for _, u := range lines {
		if err := verifyV4(pub, u); err != nil {
			t.Errorf("gcloud's URL does not verify: %v\n%s", err, u)
		}
		for _, bad := range []string{
			strings.Replace(u, "sha256/0123", "sha256/1123", 1),
			strings.Replace(u, "x-goog-expires=300", "x-goog-expires=301", 1),
			strings.Replace(u, "storage.googleapis.com", "storage.googleapis.com.", 1),
		} {
			if verifyV4(pub, bad) == nil {
				t.Errorf("an altered URL verifies: %s", bad)
			}
		}
	}
}

func TestGCSStore(t *testing.T) {
	g := testutil.StartFakeGCS(t)

	t.Run("PutStatOpenListDelete", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, g, "basic/")
		small := []byte("hello, blob")
		h, err := layers.Put(ctx, s, small)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Stat(ctx, h); err != nil || n != int64(len(small)) {
			t.Errorf("Stat = %d, %v", n, err)
		}
		if got := readAll(t, s, h); !bytes.Equal(got, small) {
			t.Errorf("Open: %q", got)
		}
		big := randomBytes(3*chunk + 12345) // four chunks
		bw, err := s.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(big); off += 100_000 {
			bw.Write(big[off:min(off+100_000, len(big))])
		}
		hb := digest(big)
		if d, ok := bw.(layers.Digester); !ok || d.Digest() != hb {
			t.Errorf("the writer is no Digester, or its digest is wrong")
		}
		if err := bw.Commit(hb); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, hb); !bytes.Equal(got, big) {
			t.Errorf("Open of the resumable upload's blob: %d bytes, not what was written", len(got))
		}
		// Seek and read parts, as http.ServeContent does for Range.
		rc, _ := s.Open(ctx, hb)
		if end, err := rc.Seek(0, io.SeekEnd); err != nil || end != int64(len(big)) {
			t.Errorf("Seek to the end: %d, %v", end, err)
		}
		for _, off := range []int64{2*chunk + 77, 5, int64(len(big)) - 10} {
			rc.Seek(off, io.SeekStart)
			part := make([]byte, min(1000, int64(len(big))-off))
			if _, err := io.ReadFull(rc, part); err != nil || !bytes.Equal(part, big[off:off+int64(len(part))]) {
				t.Errorf("read at %d: %v", off, err)
			}
		}
		if fi, err := rc.(interface{ Stat() (fs.FileInfo, error) }).Stat(); err != nil || fi.Size() != int64(len(big)) || time.Since(fi.ModTime()) > time.Hour || !fi.Mode().IsRegular() {
			t.Errorf("reader's Stat: %v, %v", fi, err)
		}
		if v, ok := rc.(layers.Versioned); !ok || v.Version() == "" || v.Version() == "0" {
			t.Errorf("the reader gives no version (generation)")
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
		if ns := names(t, g, "basic/"); !slices.Equal(ns, []string{"basic/blobs/sha256/" + hb.Hex}) {
			t.Errorf("the bucket holds %v", ns)
		}
	})

	t.Run("BadDigests", func(t *testing.T) {
		// Rejected before any request.
		ctx := t.Context()
		c := &counting{}
		s := newStore(t, g, "bad/", func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: c} })
		before := c.n.Load()
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
		for _, n := range []int{100, 2*chunk + 1} {
			bw, _ := s.Create(ctx)
			bw.Write(randomBytes(n))
			if err := bw.Commit(digest([]byte("other"))); !errors.Is(err, layers.ErrDigestMismatch) {
				t.Errorf("Commit of %d bytes with a wrong digest: %v", n, err)
			}
		}
		if n := c.n.Load() - before; n != 0 {
			t.Errorf("%d requests for bad digests", n)
		}
		if ns := names(t, g, "bad/"); len(ns) != 0 {
			t.Errorf("the bucket holds %v", ns)
		}
	})

	t.Run("PartialNeverVisible", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, g, "partial/")
		data := randomBytes(5*chunk + 3)
		h := digest(data)
		bw, _ := s.Create(ctx)
		bw.Write(data[:4*chunk])
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat during the write: %v", err)
		}
		bw.Write(data[4*chunk:])
		if err := bw.Cancel(); err != nil {
			t.Fatal(err)
		}
		if err := bw.Commit(h); err == nil {
			t.Error("Commit after Cancel succeeded")
		}
		if ns := names(t, g, "partial/"); len(ns) != 0 {
			t.Errorf("objects after a cancel: %v", ns)
		}

		// An upload cut off after two of its six chunks (the context
		// ends, as when the server stops): the commit fails, nothing is
		// visible, and the session is cancelled.
		c := &counting{}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		c.cancel, c.cancelN = cancel, 2
		sc := newStore(t, g, "partial/", func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: c} })
		bw, _ = sc.Create(cctx)
		bw.Write(data)
		if err := bw.Commit(h); err == nil || !errors.Is(err, context.Canceled) {
			t.Errorf("Commit cut off after two chunks: %v", err)
		}
		if got := c.chunks.Load(); got < 2 || got > 3 {
			t.Errorf("%d chunks sent before the cut, want 2 (or the one in flight)", got)
		}
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat after a cut-off upload: %v", err)
		}
		if ns := names(t, g, "partial/"); len(ns) != 0 {
			t.Errorf("objects after a cut-off upload: %v", ns)
		}

		// What a process killed mid-upload leaves: a session with some
		// chunks and no end. It is not an object.
		resp, err := http.Post(g.Endpoint()+"/upload/storage/v1/b/"+g.Bucket+"/o?uploadType=resumable&name="+url.QueryEscape(s.Key(h)), "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		req, _ := http.NewRequest("PUT", resp.Header.Get("Location"), bytes.NewReader(data[:chunk]))
		req.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", chunk-1, len(data)))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect {
			t.Fatalf("first chunk of an unfinished upload: %s, want 308", resp.Status)
		}
		if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
			t.Errorf("Stat of an unfinished upload: %v", err)
		}
		n := 0
		s.List(ctx, func(layers.BlobInfo) error { n++; return nil })
		if n != 0 {
			t.Errorf("List shows %d blobs of an unfinished upload", n)
		}
		// And the blob can still be written whole.
		if _, err := layers.Put(ctx, s, data); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, s, h), data) {
			t.Error("the blob written after the cut-off uploads reads back wrong")
		}
	})

	t.Run("ServerKeepsPartOfAChunk", func(t *testing.T) {
		// GCS may keep fewer bytes of a chunk than were sent, and says
		// how many in the 308's Range: the writer goes on from there.
		// Here every chunk but the last reaches the emulator halved.
		ctx := t.Context()
		h := &halving{}
		s := newStore(t, g, "short/", func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: h} })
		data := randomBytes(3*chunk + 999)
		d, err := layers.Put(ctx, s, data)
		if err != nil {
			t.Fatal(err)
		}
		if h.halved.Load() < 3 {
			t.Errorf("only %d chunks were halved", h.halved.Load())
		}
		if !bytes.Equal(readAll(t, s, d), data) {
			t.Error("the blob uploaded in halved chunks reads back wrong")
		}
	})

	t.Run("BoundedMemory", func(t *testing.T) {
		// A 48 MiB blob passes through a writer holding one chunk: the
		// process allocates a fraction of the blob's size.
		ctx := t.Context()
		c := &counting{}
		s := newStore(t, g, "memory/", func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: c} })
		piece := randomBytes(1 << 20)
		h := sha256.New()
		for range 48 {
			h.Write(piece)
		}
		want := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		bw, _ := s.Create(ctx)
		for range 48 {
			bw.Write(piece)
		}
		if err := bw.Commit(want); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("writing a 48 MiB blob allocated %d MiB", alloc>>20)
		}
		if n := c.chunks.Load(); n != 48 {
			t.Errorf("the 48 MiB blob went in %d chunks, want 48 of 1 MiB", n)
		}
		if n, err := s.Stat(ctx, want); err != nil || n != 48<<20 {
			t.Errorf("Stat = %d, %v", n, err)
		}
	})

	t.Run("DamagedDetected", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, g, "damaged/")
		data := randomBytes(2*chunk + 5)
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
		// Damaged behind the store's back: same size, other bytes, a
		// new generation.
		bad := bytes.Clone(data)
		bad[12345] ^= 0xff
		rawPut(t, g, s.Key(h), bad)
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
		q := names(t, g, "damaged/quarantine/")
		if len(q) != 1 || !strings.HasPrefix(q[0], "damaged/quarantine/"+h.Hex+".") {
			t.Fatalf("quarantine holds %v", q)
		}
		resp, err := http.Get(g.Endpoint() + "/storage/v1/b/" + g.Bucket + "/o/" + url.PathEscape(q[0]) + "?alt=media")
		if err != nil {
			t.Fatal(err)
		}
		qb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(qb, bad) {
			t.Errorf("the quarantined object has %d bytes, not the damaged blob's", len(qb))
		}
		// Put replaces a damaged blob.
		rawPut(t, g, s.Key(h), bad)
		if _, err := layers.Put(ctx, s, data); err != nil {
			t.Fatal(err)
		}
		if err := v.Check(ctx, h, nil); err != nil {
			t.Errorf("after Put replaced the damaged blob: %v", err)
		}
	})

	t.Run("Records", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, g, "rec/")
		k1, k2 := digest([]byte("one")).Hex, digest([]byte("two")).Hex
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
		if b, err := s.GetRecord(ctx, k1); err != nil || string(b) != `{"a":3}` {
			t.Errorf("GetRecord = %q, %v", b, err)
		}
		rawPut(t, g, "rec/index/junk.json", []byte("{}"))
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
		if ns := names(t, g, "rec/index/"+k2); !slices.Equal(ns, []string{"rec/index/" + k2 + ".json"}) {
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
	})

	t.Run("State", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, g, "st/")
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
		b, mod1, err := s.GetState(ctx, "lease/gc")
		if err != nil || string(b) != "replica-1" {
			t.Fatalf("GetState = %q, %v", b, err)
		}
		if d := mod1.Sub(start); d < -2*time.Second || d > time.Minute {
			t.Errorf("GetState's time %v is %v from the write", mod1, d)
		}
		time.Sleep(20 * time.Millisecond)
		if err := s.PutState(ctx, "lease/gc", []byte("replica-2")); err != nil {
			t.Fatal(err)
		}
		b, mod2, err := s.GetState(ctx, "lease/gc")
		if err != nil || string(b) != "replica-2" || !mod2.After(mod1) {
			t.Errorf("GetState after a second write = %q, %v, %v (first write %v)", b, mod2, err, mod1)
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
		if ns := names(t, g, "st/state/"); len(ns) != 3 || !slices.Contains(ns, "st/state/lease/gc") {
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
	})

	t.Run("SignedURL", func(t *testing.T) {
		ctx := t.Context()
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		sa, _ := json.Marshal(map[string]string{
			"type": "service_account", "client_email": "nixery@test-project.iam.gserviceaccount.com",
			"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			"token_uri":   "http://127.0.0.1:1/never-used",
		})
		credFile := filepath.Join(t.TempDir(), "sa.json")
		os.WriteFile(credFile, sa, 0o600)
		s := newStore(t, g, "url/", func(o *gcsstore.Options) { o.CredentialsFile = credFile })
		if !s.CanSign() {
			t.Fatal("a store with a service account key cannot sign")
		}
		data := randomBytes(300_000)
		h, err := layers.Put(ctx, s, data)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.URL(ctx, h, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if u.Host != g.Host || u.Path != "/"+g.Bucket+"/url/blobs/sha256/"+h.Hex {
			t.Errorf("signed URL %s: want path-style on the emulator", raw)
		}
		q := u.Query()
		if q.Get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256" || q.Get("X-Goog-Expires") != "300" || q.Get("X-Goog-SignedHeaders") != "host" ||
			!strings.HasPrefix(q.Get("X-Goog-Credential"), "nixery@test-project.iam.gserviceaccount.com/"+time.Now().UTC().Format("20060102")+"/auto/storage/goog4_request") {
			t.Errorf("signed URL's query: %v", q)
		}
		// The signature, checked with the public key by the verifier
		// that accepts gcloud's URLs (TestV4Verifier).
		if err := verifyV4(&key.PublicKey, raw); err != nil {
			t.Errorf("the URL's signature does not verify: %v", err)
		}
		// An object name with characters the path escapes.
		odd := newStore(t, g, "a b+c~d/", func(o *gcsstore.Options) { o.CredentialsFile = credFile })
		oddURL, err := odd.URL(ctx, h, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(oddURL, "/"+g.Bucket+"/a%20b%2Bc~d/blobs/sha256/"+h.Hex+"?") {
			t.Errorf("signed URL of an odd name: %s", oddURL)
		}
		if err := verifyV4(&key.PublicKey, oddURL); err != nil {
			t.Errorf("the odd name's URL does not verify: %v", err)
		}
		// The emulator serves it, with Range, as GCS would.
		req, _ := http.NewRequestWithContext(ctx, "GET", raw, nil)
		req.Header.Set("Range", "bytes=100-199")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[100:200]) {
			t.Errorf("GET of the signed URL with Range: %s, %d bytes", resp.Status, len(body))
		}
		resp, err = http.Get(raw)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("GET of the signed URL: %s, %d bytes", resp.Status, len(body))
		}
		for _, d := range []time.Duration{0, 8 * 24 * time.Hour} {
			if _, err := s.URL(ctx, h, d); err == nil {
				t.Errorf("URL valid for %v accepted (GCS allows 1s to 7 days)", d)
			}
		}
		// Without a key, against the emulator: a plain URL that works.
		plain := newStore(t, g, "url/")
		pu, err := plain.URL(ctx, h, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		resp, err = http.Get(pu)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("GET of the emulator URL %s: %s, %d bytes", pu, resp.Status, len(body))
		}
	})

	t.Run("SpoolFull", func(t *testing.T) {
		// A blob larger than one chunk is spooled to local disk: with
		// the spool's disk full, the write fails with the reason,
		// nothing reaches the bucket, and the space comes back.
		ctx := t.Context()
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount a 6 MiB tmpfs for the spool (the test needs root): %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		s := newStore(t, g, "spool/", func(o *gcsstore.Options) { o.SpoolDir = dir })
		data := randomBytes(10 << 20)
		bw, _ := s.Create(ctx)
		var werr error
		for off := 0; off < len(data) && werr == nil; off += 1 << 20 {
			_, werr = bw.Write(data[off : off+1<<20])
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("the spool file has a name in %s: %v", dir, ents)
			}
		}
		if werr == nil || !strings.Contains(werr.Error(), "no space left on device") || !strings.Contains(werr.Error(), "spool") {
			t.Errorf("Write of 10 MiB to a 6 MiB spool: %v, want a spool error saying no space", werr)
		}
		if err := bw.Commit(digest(data)); err == nil {
			t.Error("Commit after a failed write succeeded")
		}
		if ns := names(t, g, "spool/"); len(ns) != 0 {
			t.Errorf("after a failed spool the bucket holds %v", ns)
		}
		h, err := layers.Put(ctx, s, data[:4<<20])
		if err != nil {
			t.Fatalf("Put of 4 MiB after the failure: %v", err)
		}
		if !bytes.Equal(readAll(t, s, h), data[:4<<20]) {
			t.Error("the 4 MiB blob reads back wrong")
		}
	})

	t.Run("Options", func(t *testing.T) {
		ctx := t.Context()
		for _, o := range []gcsstore.Options{
			{EmulatorHost: g.Host},
			{Bucket: "a/b", EmulatorHost: g.Host},
			{Bucket: g.Bucket, EmulatorHost: g.Host, ChunkSize: 1000},
			{Bucket: g.Bucket, EmulatorHost: "ftp://x"},
			{Bucket: g.Bucket, EmulatorHost: g.Host, CredentialsFile: "/nonexistent/key.json"},
			{Bucket: "no-such-bucket", EmulatorHost: g.Host},
		} {
			if _, err := gcsstore.New(ctx, o); err == nil {
				t.Errorf("New(%+v) accepted", o)
			}
		}
		if _, err := gcsstore.New(ctx, gcsstore.Options{Bucket: g.Bucket, EmulatorHost: "http://" + g.Host}); err != nil {
			t.Errorf("an emulator host given as a URL: %v", err)
		}
	})
}
