package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
)

const (
	acceptDocker = "application/vnd.docker.distribution.manifest.v2+json"
	acceptOCI    = "application/vnd.oci.image.manifest.v1+json"
)

// fakeImages serves one image per name it knows, and counts what reaches
// it. An error from errs is returned for a name it maps.
type fakeImages struct {
	images map[string][]v1.Descriptor // name -> manifests
	blobs  map[v1.Hash][]byte
	errs   map[string]error // name -> error
	calls  atomic.Int64
	names  sync.Map // names that reached Manifests
}

func desc(mt string, data []byte) v1.Descriptor {
	h, n, _ := v1.SHA256(bytes.NewReader(data))
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: n, Data: data}
}

func newFakeImages() *fakeImages {
	f := &fakeImages{images: map[string][]v1.Descriptor{}, blobs: map[v1.Hash][]byte{}, errs: map[string]error{}}
	for _, name := range []string{"hello", "shell/curl"} {
		docker := desc(acceptDocker, []byte(`{"schemaVersion":2,"mediaType":"`+acceptDocker+`","name":"`+name+`"}`))
		oci := desc(acceptOCI, []byte(`{"schemaVersion":2,"mediaType":"`+acceptOCI+`","name":"`+name+`"}`))
		f.images[name] = []v1.Descriptor{docker, oci}
		f.blobs[docker.Digest], f.blobs[oci.Digest] = docker.Data, oci.Data
	}
	blob := bytes.Repeat([]byte("0123456789"), 100)
	f.blobs[desc("", blob).Digest] = blob
	return f
}

func (f *fakeImages) Manifests(ctx context.Context, name, tag string) ([]v1.Descriptor, error) {
	f.calls.Add(1)
	f.names.Store(name, true)
	if err := f.errs[name]; err != nil {
		return nil, err
	}
	if tag != "latest" {
		return nil, fmt.Errorf("fake: unknown tag %q: %w", tag, fs.ErrNotExist)
	}
	ms, ok := f.images[name]
	if !ok {
		return nil, fmt.Errorf("fake: unknown packages: %s: %w", name, fs.ErrNotExist)
	}
	return ms, nil
}

func (f *fakeImages) Manifest(ctx context.Context, h v1.Hash) (v1.Descriptor, error) {
	f.calls.Add(1)
	for _, ms := range f.images {
		for _, m := range ms {
			if m.Digest == h {
				return m, nil
			}
		}
	}
	return v1.Descriptor{}, fmt.Errorf("fake: %s: %w", h, fs.ErrNotExist)
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func (f *fakeImages) Blob(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error) {
	f.calls.Add(1)
	b, ok := f.blobs[h]
	if !ok {
		return nil, 0, fmt.Errorf("fake: %w: %s", layers.ErrBlobUnknown, h)
	}
	return nopCloser{bytes.NewReader(b)}, int64(len(b)), nil
}

func newTestServer(t *testing.T) (*fakeImages, *httptest.Server, *testutil.SyncBuffer) {
	f := newFakeImages()
	logs := &testutil.SyncBuffer{}
	reg := New(f, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	srv := httptest.NewServer(reg)
	t.Cleanup(func() { srv.Close(); reg.Close() })
	return f, srv, logs
}

func do(t *testing.T, srv *httptest.Server, method, path string, hdr map[string]string) testutil.Response {
	t.Helper()
	return testutil.Do(t, srv.Client(), method, srv.URL+path, hdr)
}

func TestBase(t *testing.T) {
	_, srv, _ := newTestServer(t)
	for _, p := range []string{"/v2/", "/v2"} {
		r := do(t, srv, "GET", p, nil)
		if r.Status != 200 || r.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" || string(r.Body) != "{}" {
			t.Errorf("GET %s: %d %v %q", p, r.Status, r.Header, r.Body)
		}
	}
}

// TestRoutes: methods, routes, names and digests that the registry refuses
// itself, before they reach Images.
func TestRoutes(t *testing.T) {
	f, srv, _ := newTestServer(t)
	zero := "sha256:" + strings.Repeat("0", 64)
	longName := strings.Repeat("a", 300)
	tests := []struct {
		method, path string
		status       int
		code         string
		message      string // a substring of the message, if set
	}{
		{"POST", "/v2/curl/blobs/uploads/", 405, "UNSUPPORTED", "read-only"},
		{"PATCH", "/v2/curl/blobs/uploads/abc", 405, "UNSUPPORTED", ""},
		{"PUT", "/v2/curl/blobs/uploads/abc?digest=" + zero, 405, "UNSUPPORTED", ""},
		{"GET", "/v2/curl/blobs/uploads/abc", 405, "UNSUPPORTED", ""},
		{"PUT", "/v2/curl/manifests/latest", 405, "UNSUPPORTED", ""},
		{"DELETE", "/v2/curl/manifests/latest", 405, "UNSUPPORTED", ""},
		{"DELETE", "/v2/curl/blobs/" + zero, 405, "UNSUPPORTED", ""},
		{"OPTIONS", "/v2/curl/manifests/latest", 405, "UNSUPPORTED", ""},
		{"POST", "/v2/", 405, "UNSUPPORTED", ""},
		{"GET", "/v2/_catalog", 404, "NOT_FOUND", ""},
		{"GET", "/v2/curl/referrers/" + zero, 404, "NOT_FOUND", ""},
		{"GET", "/v3/curl/manifests/latest", 404, "NOT_FOUND", ""},
		{"GET", "/v2/curl/whatever/latest", 404, "NOT_FOUND", ""},
		{"GET", "/v2/manifests/latest", 404, "NOT_FOUND", ""},
		// Hostile or malformed names never reach Images.
		{"GET", "/v2/" + url.PathEscape(`${builtins.readFile "/etc/passwd"}`) + "/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", `/v2/a"b/manifests/latest`, 400, "NAME_INVALID", ""},
		{"GET", "/v2/x;y/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/curl/../etc/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/curl//git/manifests/latest", 400, "NAME_INVALID", "empty"},
		{"GET", "/v2/" + longName + "/manifests/latest", 400, "NAME_INVALID", "limit"},
		{"GET", "/v2/h%C3%A9llo/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/a..b/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/-curl/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/a'b/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/" + longName + "/blobs/" + zero, 400, "NAME_INVALID", ""},
		{"GET", "/v2/" + longName + "/tags/list", 400, "NAME_INVALID", ""},
		// Digests are checked before they reach Images.
		{"GET", "/v2/curl/blobs/sha256:abc", 400, "DIGEST_INVALID", ""},
		{"GET", "/v2/curl/blobs/sha512:" + strings.Repeat("0", 128), 400, "DIGEST_INVALID", "sha256"},
		{"GET", "/v2/curl/blobs/sha256:" + strings.Repeat("A", 64), 400, "DIGEST_INVALID", ""},
		{"GET", "/v2/curl/blobs/sha256:" + strings.Repeat(".", 64), 400, "DIGEST_INVALID", ""},
		{"GET", "/v2/curl/blobs/" + url.PathEscape("sha256:../../../../etc/passwd"), 404, "NOT_FOUND", ""},
		{"GET", "/v2/curl/blobs/sha256:..%5C..%5Cetc", 400, "DIGEST_INVALID", ""},
		{"GET", "/v2/curl/blobs/latest", 400, "DIGEST_INVALID", ""},
		{"GET", "/v2/curl/manifests/sha256:zz", 400, "DIGEST_INVALID", ""},
		{"GET", "/v2/curl/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+truncate(tt.path, 60), func(t *testing.T) {
			r := do(t, srv, tt.method, tt.path, nil)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			code, msg := r.RegistryError(t)
			if code != tt.code || !strings.Contains(msg, tt.message) {
				t.Errorf("%s %q, want %s with %q", code, msg, tt.code, tt.message)
			}
			if tt.status == 405 && r.Header.Get("Allow") != "GET, HEAD" {
				t.Error("405 without Allow header")
			}
		})
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("%d of these requests reached Images", n)
	}
}

// TestClassify: errors from Images become the client's error by the
// standard errors they match; messages are escaped and bounded.
func TestClassify(t *testing.T) {
	f, srv, logs := newTestServer(t)
	f.errs["notexist"] = fmt.Errorf("nix: unknown packages: notexist: %w", fs.ErrNotExist)
	f.errs["invalid"] = fmt.Errorf("images: invalid image name: %w", fs.ErrInvalid)
	f.errs["arm"] = fmt.Errorf("nix: unsupported system: %w", errors.ErrUnsupported)
	f.errs["slow"] = fmt.Errorf("nix: build timed out: %w", context.DeadlineExceeded)
	f.errs["broken"] = errors.New("nix: build failed: exit status 1")
	f.errs["weird"] = errors.New("nix: \x1b[31mred\x00\xff " + strings.Repeat("x", 5000))
	tests := []struct {
		name, code string
		status     int
		message    string
	}{
		{"notexist", "MANIFEST_UNKNOWN", 404, "unknown packages: notexist"},
		{"invalid", "NAME_INVALID", 400, "invalid image name"},
		{"arm", "MANIFEST_UNKNOWN", 404, "unsupported system"},
		{"slow", "UNAVAILABLE", 503, "timed out"},
		{"broken", "UNKNOWN", 500, "build failed: exit status 1"},
		{"weird", "UNKNOWN", 500, `nix: \x1b[31mred\x00\xff xxx`},
	}
	for _, tt := range tests {
		r := do(t, srv, "GET", "/v2/"+tt.name+"/manifests/latest", nil)
		code, msg := r.RegistryError(t)
		if r.Status != tt.status || code != tt.code || !strings.Contains(msg, tt.message) {
			t.Errorf("%s: %d %s %q, want %d %s with %q", tt.name, r.Status, code, msg, tt.status, tt.code, tt.message)
		}
		if len(msg) > maxMessage+3 {
			t.Errorf("%s: message of %d bytes", tt.name, len(msg))
		}
	}
	for _, want := range []string{"level=ERROR msg=\"request failed\" path=/v2/broken/manifests/latest code=UNKNOWN", "level=INFO msg=\"request failed\" path=/v2/notexist/manifests/latest"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestManifests(t *testing.T) {
	f, srv, _ := newTestServer(t)
	ms := f.images["shell/curl"]
	for i, accept := range []string{acceptDocker, acceptOCI} {
		for _, method := range []string{"GET", "HEAD"} {
			r := do(t, srv, method, "/v2/shell/curl/manifests/latest", map[string]string{"Accept": accept})
			if r.Status != 200 || r.Header.Get("Content-Type") != accept || r.Header.Get("Docker-Content-Digest") != ms[i].Digest.String() ||
				r.Header.Get("Content-Length") != fmt.Sprint(ms[i].Size) || r.Header.Get("Vary") != "Accept" {
				t.Errorf("%s %s: %d %v", method, accept, r.Status, r.Header)
			}
			if want := string(ms[i].Data); method == "GET" && string(r.Body) != want || method == "HEAD" && len(r.Body) != 0 {
				t.Errorf("%s %s: body %q", method, accept, r.Body)
			}
		}
		// By digest, whatever the Accept header says.
		d := do(t, srv, "GET", "/v2/anything/manifests/"+ms[i].Digest.String(), map[string]string{"Accept": acceptDocker})
		if d.Status != 200 || string(d.Body) != string(ms[i].Data) || d.Header.Get("Content-Type") != accept {
			t.Errorf("by digest: %d %q", d.Status, d.Header.Get("Content-Type"))
		}
	}
	zero := "sha256:" + strings.Repeat("0", 64)
	r := do(t, srv, "GET", "/v2/shell/curl/manifests/"+zero, nil)
	if code, msg := r.RegistryError(t); r.Status != 404 || code != "MANIFEST_UNKNOWN" || !strings.Contains(msg, zero) {
		t.Errorf("unknown digest: %d %s %q", r.Status, code, msg)
	}
}

func TestBlobs(t *testing.T) {
	_, srv, _ := newTestServer(t)
	blob := bytes.Repeat([]byte("0123456789"), 100)
	d := desc("", blob).Digest.String()
	b := do(t, srv, "GET", "/v2/any/name/blobs/"+d, nil)
	if b.Status != 200 || string(b.Body) != string(blob) || b.Header.Get("Docker-Content-Digest") != d ||
		b.Header.Get("Content-Length") != "1000" || b.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET blob: %d %v", b.Status, b.Header)
	}
	h := do(t, srv, "HEAD", "/v2/curl/blobs/"+d, nil)
	if h.Status != 200 || len(h.Body) != 0 || h.Header.Get("Content-Length") != "1000" {
		t.Errorf("HEAD blob: %d %v", h.Status, h.Header)
	}
	rg := do(t, srv, "GET", "/v2/curl/blobs/"+d, map[string]string{"Range": "bytes=2-9"})
	if rg.Status != 206 || string(rg.Body) != string(blob[2:10]) || rg.Header.Get("Content-Range") != "bytes 2-9/1000" {
		t.Errorf("Range: %d %q %v", rg.Status, rg.Body, rg.Header)
	}
	if bad := do(t, srv, "GET", "/v2/curl/blobs/"+d, map[string]string{"Range": "bytes=2000-"}); bad.Status != 416 {
		t.Errorf("unsatisfiable Range: %d", bad.Status)
	}
	zero := "sha256:" + strings.Repeat("0", 64)
	r := do(t, srv, "GET", "/v2/curl/blobs/"+zero, nil)
	if code, msg := r.RegistryError(t); r.Status != 404 || code != "BLOB_UNKNOWN" || !strings.Contains(msg, zero) {
		t.Errorf("unknown blob: %d %s %q", r.Status, code, msg)
	}
}

func TestTags(t *testing.T) {
	f, srv, _ := newTestServer(t)
	for q, want := range map[string]string{
		"":                   `{"name":"shell/curl","tags":["latest"]}`,
		"?n=0":               `{"name":"shell/curl","tags":[]}`,
		"?n=10":              `{"name":"shell/curl","tags":["latest"]}`,
		"?last=latest":       `{"name":"shell/curl","tags":[]}`,
		"?n=1&last=aardvark": `{"name":"shell/curl","tags":["latest"]}`,
	} {
		r := do(t, srv, "GET", "/v2/shell/curl/tags/list"+q, nil)
		if r.Status != 200 || string(r.Body) != want {
			t.Errorf("tags%s: %d %s, want %s", q, r.Status, r.Body, want)
		}
	}
	if f.calls.Load() != 0 {
		t.Error("the tag list asked Images")
	}
}

func TestRequestLog(t *testing.T) {
	_, srv, logs := newTestServer(t)
	do(t, srv, "GET", "/v2/hello/manifests/latest", nil)
	long := "/v2/" + strings.Repeat("a", 5000) + "/manifests/latest"
	do(t, srv, "GET", long, nil)
	// The lines are logged just after the responses are sent.
	var s string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if s = logs.String(); strings.Count(s, "msg=request ") == 2 {
			break
		}
	}
	if !strings.Contains(s, "msg=request method=GET path=/v2/hello/manifests/latest status=200 bytes=") {
		t.Errorf("log lacks the request line:\n%s", s)
	}
	if len(s) > 2000 || !strings.Contains(s, "path="+long[:maxLoggedPath]+"...") {
		t.Errorf("a 5 KB path made %d bytes of log:\n%s", len(s), s)
	}
}

// TestCancelledRequest: a client that goes away is logged as cancelled,
// not as a server failure.
func TestCancelledRequest(t *testing.T) {
	f, srv, logs := newTestServer(t)
	block := make(chan struct{})
	defer close(block)
	reg := New(blockingImages{f, block}, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	defer reg.Close()
	srv.Config.Handler = reg
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v2/hello/manifests/latest", nil)
	if _, err := srv.Client().Do(req); err == nil {
		t.Fatal("a blocked request answered")
	}
	var s string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if s = logs.String(); strings.Contains(s, "request cancelled") {
			break
		}
	}
	if !strings.Contains(s, `level=INFO msg="request cancelled" path=/v2/hello/manifests/latest`) || strings.Contains(s, "level=ERROR") {
		t.Errorf("log:\n%s", s)
	}
}

// blockingImages waits in Manifests until its context ends or block is
// closed, and then fails with the context's error.
type blockingImages struct {
	*fakeImages
	block chan struct{}
}

func (b blockingImages) Manifests(ctx context.Context, name, tag string) ([]v1.Descriptor, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.block:
		return nil, errors.New("unblocked")
	}
}

func TestNegotiate(t *testing.T) {
	ms := []v1.Descriptor{{MediaType: acceptDocker}, {MediaType: acceptOCI}}
	tests := []struct {
		accept []string
		want   int
	}{
		{nil, 0},
		{[]string{"*/*"}, 0},
		{[]string{acceptOCI}, 1},
		{[]string{acceptDocker}, 0},
		{[]string{acceptOCI + ", " + acceptDocker}, 1},
		{[]string{acceptDocker, acceptOCI}, 0},
		{[]string{acceptDocker + ";q=0.5, " + acceptOCI}, 1},
		{[]string{acceptOCI + ";q=0"}, 0},
		{[]string{"application/vnd.docker.distribution.manifest.list.v2+json, " + acceptOCI}, 1},
		{[]string{"garbage;;;", acceptOCI}, 1},
	}
	for _, tt := range tests {
		if got := negotiate(tt.accept, ms); got != tt.want {
			t.Errorf("negotiate(%q) = %v, want %v", tt.accept, got, tt.want)
		}
	}
}

// FuzzHandler sends arbitrary paths and methods to the handler: it must
// never panic, every error must be the spec's JSON, every 503 and 429 must
// carry Retry-After, and every name that reaches Images must follow the
// repository grammar. The Images answer hello from their cache and
// "busy" with an error that has a retry delay.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/hello/manifests/latest", "/v2/a/blobs/sha256:00", "/v2/a/blobs/uploads/",
		"/v2/x/tags/list?n=3", "/v2//manifests/", "/v2/${x}/manifests/latest", "/v2/a/../b/manifests/latest",
		"/v2/shell/curl/manifests/latest", "/v2/busy/manifests/latest", "/v2/hello/manifests/v2", "/v2/HELLO/manifests/latest",
		"/v2/" + strings.Repeat("a", 300) + "/manifests/latest"} {
		f.Add("GET", s)
	}
	f.Add("DELETE", "/v2/hello/manifests/latest")
	f.Add("HEAD", "/v2/busy/manifests/latest")
	images := newFakeImages()
	images.errs["busy"] = busyError{time.Second}
	reg := New(&cachingImages{fakeImages: images, cached: map[string]bool{"hello": true}},
		WithLogger(slog.New(slog.DiscardHandler)), WithMaxClientBuilds(1))
	defer reg.Close()
	f.Fuzz(func(t *testing.T, method, target string) {
		req, err := http.NewRequest(method, "http://registry.test"+target, nil)
		if err != nil || req.URL.Host != "registry.test" {
			return
		}
		w := httptest.NewRecorder()
		reg.ServeHTTP(w, req)
		if w.Code >= 400 && method != http.MethodHead {
			var body struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code == "" {
				t.Fatalf("%s %q: status %d with body %q", method, target, w.Code, w.Body.Bytes())
			}
		}
		if (w.Code == 503 || w.Code == 429) && w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s %q: %d without Retry-After", method, target, w.Code)
		}
		images.names.Range(func(k, _ any) bool {
			if err := checkRepoName(k.(string), DefaultMaxNameLength); err != nil {
				t.Fatalf("%s %q: Images got the name %q: %v", method, target, k, err)
			}
			return true
		})
	})
}
