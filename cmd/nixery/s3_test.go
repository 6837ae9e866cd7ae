package main

// `nixery serve` with NIXERY_STORAGE_BACKEND=s3 on a real SeaweedFS
// cluster (.ci/seaweedfs): blobs by redirect to presigned URLs, and
// proxied with Range; Docker pulls and runs through the redirects; a
// second server with an empty disk on the same bucket builds the same
// digests.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers/s3store"
)

var _ images.RecordStore = (*s3store.Store)(nil)

// startS3 starts `nixery serve` on the cluster w, with storage in dir and
// the extra environment env.
func startS3(t *testing.T, bin, dir string, w *testutil.SeaweedFS, env ...string) *faultServer {
	t.Helper()
	return startFault(t, bin, dir, append(w.Env(), env...)...)
}

// following is a client that follows redirects, as registry clients do.
// The Docker-Content-Digest of a redirect is the registry's, so it is
// carried over to the response of the URL it points to, which the
// Puller checks.
var following = &http.Client{Transport: &redirectDigests{next: http.DefaultTransport}}

type redirectDigests struct {
	next http.RoundTripper
	mu   sync.Mutex
	by   map[string]string // Location -> digest
}

func (r *redirectDigests) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[string]string{}
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusTemporaryRedirect && loc != "" {
		r.by[loc] = resp.Header.Get("Docker-Content-Digest")
	} else if d, ok := r.by[req.URL.String()]; ok && resp.Header.Get("Docker-Content-Digest") == "" {
		resp.Header.Set("Docker-Content-Digest", d)
	}
	return resp, nil
}

func TestS3Serve(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "docker")
	w := testutil.StartSeaweedFS(t)
	ctx := t.Context()

	// Replicas share a popularity file (an upstream-format map), so that
	// none computes it with Nix.
	pop := filepath.Join(t.TempDir(), "popularity.json")
	if err := os.WriteFile(pop, []byte(`{"hello": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := startS3(t, bin, dir, w, "NIX_POPULARITY_URL="+pop)
	// A pull through the redirects, every body checked.
	p := s.p
	p.Client = following
	m, err := p.Pull(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0]
	path := "/v2/hello/blobs/" + layer.Digest.String()
	r := testutil.Do(t, s.Client, "GET", s.URL(path), nil)
	if r.Status != http.StatusTemporaryRedirect || !strings.HasPrefix(r.Header.Get("Location"), w.Endpoint+"/"+w.Bucket+"/blobs/sha256/"+layer.Digest.Hex+"?") ||
		!strings.Contains(r.Header.Get("Location"), "X-Amz-Expires=300") {
		t.Errorf("GET %s: %d, Location %q; want a 307 to a presigned URL of %s valid for 300 s", path, r.Status, r.Header.Get("Location"), w.Endpoint)
	}
	r = testutil.Do(t, s.Client, "HEAD", s.URL(path), nil)
	if r.Status != 200 || r.Header.Get("Content-Length") != fmt.Sprint(layer.Size) || r.Header.Get("Docker-Content-Digest") != layer.Digest.String() {
		t.Errorf("HEAD %s: %d %v", path, r.Status, r.Header)
	}
	if _, err := os.Stat(filepath.Join(s.storage, "store")); !os.IsNotExist(err) {
		t.Errorf("the s3 backend made a local blob store: %v", err)
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
	// Proxied, from a server with an empty disk on the same bucket.
	s2 := startS3(t, bin, t.TempDir(), w, "NIXERY_BLOB_REDIRECT=false", "NIX_POPULARITY_URL="+pop)
	checkSecondServer(ctx, t, s, s2, m, ref)
	s2.end()
	s.end()
}

// checkSecondServer checks s2, a server started with an empty disk on the
// bucket of s and serving blobs through itself, against the image hello
// that s built (manifest m, pulled by Docker as ref): s2 serves it by tag
// and by digest without Nix, the blobs with Range and HEAD, and Docker
// pulls it from s2 and runs it.
func checkSecondServer(ctx context.Context, t *testing.T, s, s2 *faultServer, m *v1.Manifest, ref string) {
	t.Helper()
	_, manifest, _ := s.get(ctx, "/v2/hello/manifests/latest", "")
	m2, err := s2.p.Pull(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if m2.Config.Digest != m.Config.Digest || len(m2.Layers) != len(m.Layers) {
		t.Errorf("the second server's image differs: config %s, want %s", m2.Config.Digest, m.Config.Digest)
	}
	byDigest := fmt.Sprintf("/v2/hello/manifests/sha256:%x", sha256.Sum256(manifest))
	if status, body, _ := s2.get(ctx, byDigest, ""); status != 200 || string(body) != string(manifest) {
		t.Errorf("GET %s from the second server: %d", byDigest, status)
	}
	if n := s2.nixRuns(0); n != 0 {
		t.Errorf("the server with an empty disk ran Nix %d times for an image built by the other:\n%s", n, testutil.Tail(s2.Log(), 30))
	}
	layer := m.Layers[0]
	path := "/v2/hello/blobs/" + layer.Digest.String()
	r := testutil.Do(t, s2.Client, "GET", s2.URL(path), map[string]string{"Range": "bytes=100-1099"})
	full := testutil.Do(t, s2.Client, "GET", s2.URL(path), nil)
	if sum := fmt.Sprintf("%x", sha256.Sum256(full.Body)); full.Status != 200 || sum != layer.Digest.Hex {
		t.Errorf("proxied GET: %d, body hashes to %s", full.Status, sum)
	}
	if r.Status != http.StatusPartialContent || len(full.Body) < 1100 || string(r.Body) != string(full.Body[100:1100]) {
		t.Errorf("proxied GET with Range: %d, %d bytes", r.Status, len(r.Body))
	}
	r = testutil.Do(t, s2.Client, "HEAD", s2.URL(path), nil)
	if r.Status != 200 || r.Header.Get("Content-Length") != fmt.Sprint(layer.Size) {
		t.Errorf("proxied HEAD: %d %v", r.Status, r.Header)
	}
	dockerRemove(t, ref)
	dctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	ref2 := dockerRef(t, s2.Addr, "hello")
	mustRun(dctx, t, "docker", "pull", ref2)
	if out := mustRun(dctx, t, "docker", "run", "--rm", "--network", "none", ref2, "hello"); !strings.Contains(out, "Hello, world!") {
		t.Errorf("docker run hello (proxied) printed %q", out)
	}
	if n := s2.nixRuns(0); n != 0 {
		t.Errorf("the second server ran Nix %d times", n)
	}
}

// TestS3SharedPopularity: the first replica on a bucket computes the
// bundled set's popularity with Nix and keeps it in the bucket; a replica
// started on an empty disk takes it from there without running Nix, and
// builds the same digests for a new image.
func TestS3SharedPopularity(t *testing.T) {
	bin := requireFaultTools(t)
	w := testutil.StartSeaweedFS(t)
	w.SetEnv(t)
	ctx := t.Context()
	waitPopularity := func(s *faultServer) string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			for _, line := range strings.Split(s.Log(), "\n") {
				if strings.Contains(line, `msg="popularity ready"`) {
					return line
				}
			}
		}
		t.Fatalf("no popularity:\n%s", testutil.Tail(s.Log(), 30))
		return ""
	}
	s := startS3(t, bin, t.TempDir(), w)
	line1 := waitPopularity(s)
	if !strings.Contains(line1, "computed from the whole") {
		t.Errorf("the first replica's popularity: %s", line1)
	}
	s3s, err := s3store.New(ctx, s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region})
	if err != nil {
		t.Fatal(err)
	}
	var shared []string
	s3s.ListState(ctx, "popularity/", func(name string, _ time.Time) error { shared = append(shared, name); return nil })
	if len(shared) != 1 {
		t.Fatalf("popularity objects in the bucket: %v", shared)
	}
	s2 := startS3(t, bin, t.TempDir(), w)
	line2 := waitPopularity(s2)
	if !strings.Contains(line2, "shared") {
		t.Errorf("the second replica's popularity: %s", line2)
	}
	if n := s2.nixRuns(0); n != 0 {
		t.Errorf("the second replica ran Nix %d times for the popularity:\n%s", n, testutil.Tail(s2.Log(), 30))
	}
	// The same popularity, so the same layers for any image.
	fp := regexp.MustCompile(`fingerprint=([0-9a-f]+)`)
	f1, f2 := fp.FindStringSubmatch(line1), fp.FindStringSubmatch(line2)
	if f1 == nil || f2 == nil || f1[1] != f2[1] {
		t.Errorf("fingerprints differ:\n%s\n%s", line1, line2)
	}
	// The first builds an image; the second serves it.
	s.p.Client, s2.p.Client = following, following
	m1, err := s.p.Pull(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := s2.p.Pull(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if m1.Config.Digest != m2.Config.Digest {
		t.Errorf("hello: config %s from the first replica, %s from the second", m1.Config.Digest, m2.Config.Digest)
	}
	s2.end()
	s.end()
}
