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
	"net/http"
	"net/url"
	"os"
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
	"github.com/nixery-go/nixery/internal/testutil/objstoretest"
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

// rawGet reads an object behind the store's back.
func rawGet(t *testing.T, g *testutil.FakeGCS, name string) []byte {
	t.Helper()
	resp, err := http.Get(g.Endpoint() + "/storage/v1/b/" + g.Bucket + "/o/" + url.PathEscape(name) + "?alt=media")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("raw download of %s: %s", name, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
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

// TestGCSStore is the conformance of the GCS store on fake-gcs-server
// (objstoretest.Run), and what only GCS has: resumable uploads cut off or
// kept in part, V4-signed URLs, its options.
func TestGCSStore(t *testing.T) {
	g := testutil.StartFakeGCS(t)

	// The conformance of every object-store backend.
	objstoretest.Run(t, objstoretest.Backend{
		New: func(t *testing.T, prefix, spoolDir string) objstoretest.Store {
			return newStore(t, g, prefix, func(o *gcsstore.Options) { o.SpoolDir = spoolDir })
		},
		Counted: func(t *testing.T, prefix string) (objstoretest.Store, func() int64) {
			c := &counting{}
			return newStore(t, g, prefix, func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: c} }), c.n.Load
		},
		Keys: func(t *testing.T, prefix string) []string { return names(t, g, prefix) },
		Put:  func(t *testing.T, key string, data []byte) { rawPut(t, g, key, data) },
		Get:  func(t *testing.T, key string) []byte { return rawGet(t, g, key) },
		Part: chunk,
		Tick: 20 * time.Millisecond,
	})

	t.Run("CutOffUploads", func(t *testing.T) {
		ctx := t.Context()
		s := newStore(t, g, "cut/")
		data := objstoretest.RandomBytes(5*chunk + 3)
		h := objstoretest.Digest(data)

		// An upload cut off after two of its six chunks (the context
		// ends, as when the server stops): the commit fails, nothing is
		// visible, and the session is cancelled.
		c := &counting{}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		c.cancel, c.cancelN = cancel, 2
		sc := newStore(t, g, "cut/", func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: c} })
		bw, _ := sc.Create(cctx)
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
		if ns := names(t, g, "cut/"); len(ns) != 0 {
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
		if !bytes.Equal(testutil.ReadBlob(t, s, h), data) {
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
		data := objstoretest.RandomBytes(3*chunk + 999)
		d, err := layers.Put(ctx, s, data)
		if err != nil {
			t.Fatal(err)
		}
		if h.halved.Load() < 3 {
			t.Errorf("only %d chunks were halved", h.halved.Load())
		}
		if !bytes.Equal(testutil.ReadBlob(t, s, d), data) {
			t.Error("the blob uploaded in halved chunks reads back wrong")
		}
	})

	t.Run("BoundedMemory", func(t *testing.T) {
		// A 48 MiB blob passes through a writer holding one chunk: the
		// process allocates a fraction of the blob's size.
		ctx := t.Context()
		c := &counting{}
		s := newStore(t, g, "memory/", func(o *gcsstore.Options) { o.HTTPClient = &http.Client{Transport: c} })
		piece := objstoretest.RandomBytes(1 << 20)
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
		s := newStore(t, g, "signed/", func(o *gcsstore.Options) { o.CredentialsFile = credFile })
		if !s.CanSign() {
			t.Fatal("a store with a service account key cannot sign")
		}
		data := objstoretest.RandomBytes(300_000)
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
		if u.Host != g.Host || u.Path != "/"+g.Bucket+"/signed/blobs/sha256/"+h.Hex {
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
