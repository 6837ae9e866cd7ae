package main

// `nixery serve` with NIXERY_STORAGE_BACKEND=gcs on a real GCS emulator
// (fake-gcs-server, .ci/fake-gcs): an image built with Nix, its blobs by
// redirect to V4-signed URLs and proxied with Range; Docker pulls and runs
// through the redirects; a second server with an empty STORAGE_PATH on
// the same bucket serves the image without running Nix.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/gcsstore"
)

var (
	_ images.RecordStore = (*gcsstore.Store)(nil)
	_ images.StateStore  = (*gcsstore.Store)(nil)
	_ layers.URLStore    = (*gcsstore.Store)(nil)
)

// serviceAccountKey writes a service account key file of a fresh RSA key,
// as GOOGLE_APPLICATION_CREDENTIALS names one. Its token_uri is never
// asked: an emulator needs no token.
func serviceAccountKey(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "nixery-test", "client_email": "nixery@nixery-test.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":   "http://127.0.0.1:1/token",
	})
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// gcsNames lists the object names under prefix in the emulator's bucket.
func gcsNames(t *testing.T, g *testutil.FakeGCS, prefix string) []string {
	t.Helper()
	resp, err := http.Get(g.Endpoint() + "/storage/v1/b/" + g.Bucket + "/o?prefix=" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Items []struct{ Name string } `json:"items"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("list %s: %v: %s", prefix, err, b)
	}
	var ns []string
	for _, it := range l.Items {
		ns = append(ns, it.Name)
	}
	return ns
}

func TestGCSServe(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "docker")
	g := testutil.StartFakeGCS(t)
	ctx := t.Context()

	pop := filepath.Join(t.TempDir(), "popularity.json")
	if err := os.WriteFile(pop, []byte(`{"hello": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	key := serviceAccountKey(t)
	s := startFault(t, bin, t.TempDir(), append(g.Env(), "GOOGLE_APPLICATION_CREDENTIALS="+key, "NIX_POPULARITY_URL="+pop)...)
	p := s.p
	p.Client = following
	m, err := p.Pull(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0]
	path := "/v2/hello/blobs/" + layer.Digest.String()
	r := testutil.Do(t, s.Client, "GET", s.URL(path), nil)
	loc := r.Header.Get("Location")
	if r.Status != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, g.Endpoint()+"/"+g.Bucket+"/blobs/sha256/"+layer.Digest.Hex+"?") ||
		!strings.Contains(loc, "X-Goog-Expires=300") || !strings.Contains(loc, "X-Goog-Signature=") ||
		!strings.Contains(loc, "X-Goog-Credential=nixery%40nixery-test.iam.gserviceaccount.com%2F") {
		t.Errorf("GET %s: %d, Location %q; want a 307 to a V4-signed URL on %s valid for 300 s", path, r.Status, loc, g.Endpoint())
	}
	// The signed URL gives the blob's bytes.
	resp, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if sum := fmt.Sprintf("%x", sha256.Sum256(body)); resp.StatusCode != 200 || sum != layer.Digest.Hex {
		t.Errorf("GET of the redirect's URL: %s, body hashes to %s", resp.Status, sum)
	}
	r = testutil.Do(t, s.Client, "HEAD", s.URL(path), nil)
	if r.Status != 200 || r.Header.Get("Content-Length") != fmt.Sprint(layer.Size) || r.Header.Get("Docker-Content-Digest") != layer.Digest.String() {
		t.Errorf("HEAD %s: %d %v", path, r.Status, r.Header)
	}
	if _, err := os.Stat(filepath.Join(s.storage, "store")); !os.IsNotExist(err) {
		t.Errorf("the gcs backend made a local blob store: %v", err)
	}
	if n := len(gcsNames(t, g, "index/")); n == 0 {
		t.Errorf("no image record under index/ in the bucket")
	}
	if blobs := gcsNames(t, g, "blobs/sha256/"); len(blobs) < len(m.Layers)+1 {
		t.Errorf("the bucket holds %d blobs; the image has %d layers and a config", len(blobs), len(m.Layers))
	}

	// Docker pulls through the redirects and runs the image.
	ref := dockerRef(t, s.Addr, "hello")
	dctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	mustRun(dctx, t, "docker", "pull", ref)
	if out := mustRun(dctx, t, "docker", "run", "--rm", "--network", "none", ref, "hello"); !strings.Contains(out, "Hello, world!") {
		t.Errorf("docker run hello printed %q", out)
	}
	if !strings.Contains(s.Log(), "status=307") {
		t.Errorf("the server's log shows no redirect:\n%s", testutil.Tail(s.Log(), 30))
	}

	// A server with an empty STORAGE_PATH on the same bucket, without a
	// key, serving through itself: the image the first one built, by tag
	// and by digest, without Nix; and Range.
	empty := t.TempDir()
	s2 := startFault(t, bin, empty, append(g.Env(), "STORAGE_PATH="+filepath.Join(empty, "storage"), "NIXERY_BLOB_REDIRECT=false", "NIX_POPULARITY_URL="+pop)...)
	checkSecondServer(ctx, t, s, s2, m, ref)
	s2.end()
	s.end()
}

// TestGCSServeConfig: the gcs backend's settings, and its refusals, which
// come before any request leaves the machine.
func TestGCSServeConfig(t *testing.T) {
	c, err := parseServe(nil, envMap(map[string]string{
		"NIXERY_STORAGE_BACKEND": "gcs", "GCS_BUCKET": "images", "GCS_PREFIX": "nixery/",
		"GOOGLE_APPLICATION_CREDENTIALS": "/etc/key.json", "STORAGE_EMULATOR_HOST": "127.0.0.1:4443",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.storageBackend != "gcs" || c.gcs.Bucket != "images" || c.gcs.Prefix != "nixery/" || c.gcs.CredentialsFile != "/etc/key.json" || c.gcs.EmulatorHost != "127.0.0.1:4443" {
		t.Errorf("gcs settings: %+v", c.gcs)
	}
	c, err = parseServe([]string{"-storage-backend", "gcs", "-gcs-bucket", "flagged"}, envMap(nil), io.Discard)
	if err != nil || c.gcs.Bucket != "flagged" {
		t.Errorf("gcs by flags: %+v, %v", c, err)
	}
	if _, err := parseServe(nil, envMap(map[string]string{"NIXERY_STORAGE_BACKEND": "gcs"}), io.Discard); err == nil || !strings.Contains(err.Error(), "GCS_BUCKET") {
		t.Errorf("gcs without a bucket: %v, want an error naming GCS_BUCKET", err)
	}
	// Redirects need a key that signs: a user's credentials do not.
	user := filepath.Join(t.TempDir(), "user.json")
	os.WriteFile(user, []byte(`{"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}`), 0o600)
	env := map[string]string{"NIXERY_STORAGE_BACKEND": "gcs", "GCS_BUCKET": "b", "GOOGLE_APPLICATION_CREDENTIALS": user, "STORAGE_PATH": t.TempDir()}
	err = serve(t.Context(), nil, envMap(env), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "service account key") || !strings.Contains(err.Error(), "NIXERY_BLOB_REDIRECT=false") {
		t.Errorf("redirects with user credentials: %v, want an error asking for a service account key", err)
	}
	env["GOOGLE_APPLICATION_CREDENTIALS"] = filepath.Join(t.TempDir(), "missing.json")
	if err := serve(t.Context(), nil, envMap(env), io.Discard, nil); err == nil || !strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") {
		t.Errorf("a missing credentials file: %v", err)
	}
}

// checkGCSBucket reads every blob in g's bucket and fails t for each whose
// bytes do not hash to its name. It returns the blobs' sizes.
func checkGCSBucket(t *testing.T, g *testutil.FakeGCS) map[string]int64 {
	t.Helper()
	ctx := t.Context()
	s, err := gcsstore.New(ctx, gcsstore.Options{Bucket: g.Bucket, EmulatorHost: g.Host})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	err = s.List(ctx, func(bi layers.BlobInfo) error {
		rc, err := s.Open(ctx, bi.Digest)
		if err != nil {
			return err
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err != nil {
			return err
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != bi.Digest.Hex || n != bi.Size {
			t.Errorf("blob %s in the bucket: %d bytes (listed %d) hashing to %s", bi.Digest, n, bi.Size, got)
		}
		sizes[bi.Digest.Hex] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// TestGCSKilledUpload kills (SIGKILL) a server in the middle of the
// resumable upload of a 256 MiB layer, between its chunks, by a proxy in
// front of the emulator: no object appears for the layer, every blob in
// the bucket hashes to its name, and a fresh server on the bucket builds
// and serves the image whole, its RSS staying well under the layer's size
// (the upload streams from the spool file).
func TestGCSKilledUpload(t *testing.T) {
	bin := requireFaultTools(t)
	g := testutil.StartFakeGCS(t)
	ctx := t.Context()
	const size = 256 << 20
	env := replicaSetEnv(t, size, "")

	var (
		pid    atomic.Int64
		chunks atomic.Int64
		killed atomic.Bool
	)
	target, _ := url.Parse(g.Endpoint())
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PUT" && r.Header.Get("Content-Range") != "" && chunks.Add(1) == 2 {
			// The first chunk is in the emulator's session; the
			// server dies before the second.
			if p := pid.Load(); p > 0 {
				syscall.Kill(int(p), syscall.SIGKILL)
				killed.Store(true)
			}
			http.Error(w, "killed", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	proxyHost := strings.TrimPrefix(proxy.URL, "http://")

	s := startFault(t, bin, t.TempDir(), append(env, "NIXERY_STORAGE_BACKEND=gcs", "GCS_BUCKET="+g.Bucket,
		"STORAGE_EMULATOR_HOST="+proxyHost, "NIXERY_BLOB_REDIRECT=false")...)
	pid.Store(int64(s.Pid()))
	if _, _, err := s.get(ctx, "/v2/hello/big/manifests/latest", ""); err == nil && !killed.Load() {
		t.Fatal("the manifest was served: the server was not killed during an upload")
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not die")
	}
	if !killed.Load() || chunks.Load() < 2 {
		t.Fatalf("killed %v after %d chunks; want a kill before the second chunk", killed.Load(), chunks.Load())
	}
	for h, n := range checkGCSBucket(t, g) {
		if n >= 8<<20 {
			t.Errorf("a blob of %d bytes (%s) is in the bucket: the killed upload was finalized", n, h)
		}
	}

	// A fresh server on the bucket (no proxy) builds the image whole.
	s2 := startFault(t, bin, t.TempDir(), append(append(env, g.Env()...), "NIXERY_BLOB_REDIRECT=false")...)
	m := s2.mustPull("hello/big")
	big := m.Layers[0]
	for _, l := range m.Layers {
		if l.Size > big.Size {
			big = l
		}
	}
	if big.Size < size {
		t.Fatalf("the largest layer of hello/big has %d bytes, want %d", big.Size, size)
	}
	if peak := s2.maxRSS.Load(); peak <= 0 || peak > 160<<20 {
		t.Errorf("the server's RSS peaked at %d MiB building and uploading a %d MiB layer; want under 160 MiB", peak>>20, size>>20)
	}
	sizes := checkGCSBucket(t, g)
	if sizes[big.Digest.Hex] != big.Size {
		t.Errorf("the big layer is not in the bucket whole: %d bytes of %d", sizes[big.Digest.Hex], big.Size)
	}
	s2.end()
}

// TestGCSReplicas is TestS3ReplicasSameBuild on GCS: two
// replicas on one bucket asked for the same cold image at the same moment
// build the same manifest and layers (their resumable uploads of the
// 20 MiB layer racing to one name), every blob in the bucket then hashes
// to its name, and podman pulls the image through HAProxy in front of
// them and a third replica, blobs by redirect to signed URLs, and runs a
// program of it. (A short name: podman refuses a run root, which is under
// the test's temporary directory, of more than 50 bytes.)
func TestGCSReplicas(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "podman", "haproxy")
	g := testutil.StartFakeGCS(t)
	env := append(replicaSetEnv(t, 20<<20, fmt.Sprint(time.Now().UnixNano())), g.Env()...) // cold for Nix too
	env = append(env, "GOOGLE_APPLICATION_CREDENTIALS="+serviceAccountKey(t))
	var rs []*faultServer
	for range 3 {
		rs = append(rs, startFault(t, bin, t.TempDir(), env...))
	}
	redirects := testSameBuild(t, rs, gcsstore.DefaultChunkSize, "a chunk", func() int { return len(checkGCSBucket(t, g)) })
	if redirects == 0 {
		t.Error("no replica redirected podman to a signed URL")
	}
}
