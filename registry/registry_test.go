package registry

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/nixery-go/nixery/nix"
)

const (
	acceptDocker = MediaTypeDockerManifest
	acceptOCI    = MediaTypeOCIManifest
)

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, srv *httptest.Server, method, path string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// errorCode checks that body is the spec's error JSON with one error and
// returns its code and message.
func errorCode(t *testing.T, r response) (string, string) {
	t.Helper()
	var body struct {
		Errors []struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if len(body.Errors) != 1 {
		t.Fatalf("error body %s: want one error", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q", ct)
	}
	return body.Errors[0].Code, body.Errors[0].Message
}

func TestBase(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	for _, p := range []string{"/v2/", "/v2"} {
		r := do(t, srv, "GET", p, nil)
		if r.status != 200 || r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Errorf("GET %s: %d %v", p, r.status, r.header)
		}
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	zero := "sha256:" + strings.Repeat("0", 64)
	longName := strings.Repeat("a", 300)
	manyComponents := strings.Repeat("hello/", 200) + "hello"
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
		// Hostile or malformed names never reach Nix.
		{"GET", "/v2/" + url.PathEscape(`${builtins.readFile "/etc/passwd"}`) + "/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", `/v2/a"b/manifests/latest`, 400, "NAME_INVALID", ""},
		{"GET", "/v2/x;y/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/curl/../etc/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/curl//git/manifests/latest", 400, "NAME_INVALID", "empty"},
		{"GET", "/v2/" + longName + "/manifests/latest", 400, "NAME_INVALID", "limit"},
		{"GET", "/v2/" + manyComponents + "/manifests/latest", 400, "NAME_INVALID", "limit"},
		{"GET", "/v2/h%C3%A9llo/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/a..b/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/-curl/manifests/latest", 400, "NAME_INVALID", ""},
		{"GET", "/v2/shell/manifests/latest", 200, "", ""},
		{"GET", "/v2/arm64/manifests/latest", 400, "NAME_INVALID", "no packages"},
		{"GET", "/v2/" + longName + "/blobs/" + zero, 400, "NAME_INVALID", ""},
		{"GET", "/v2/" + longName + "/tags/list", 400, "NAME_INVALID", ""},
		// Unknown things.
		{"GET", "/v2/curl/doesnotexist/alsomissing/manifests/latest", 404, "MANIFEST_UNKNOWN", "unknown packages: alsomissing, doesnotexist"},
		{"HEAD", "/v2/nosuchpkg/manifests/latest", 404, "", ""},
		{"GET", "/v2/curl/manifests/" + zero, 404, "MANIFEST_UNKNOWN", ""},
		{"GET", "/v2/curl/manifests/v1.0", 404, "MANIFEST_UNKNOWN", "v1.0"},
		{"GET", "/v2/curl/manifests/-bad", 404, "MANIFEST_UNKNOWN", "not a valid tag"},
		{"GET", "/v2/curl/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN", "not a valid tag"}, // the conformance suite's
		{"HEAD", "/v2/curl/manifests/.INVALID_MANIFEST_NAME", 404, "", ""},
		{"GET", "/v2/curl/blobs/" + zero, 404, "BLOB_UNKNOWN", ""},
		{"HEAD", "/v2/curl/blobs/" + zero, 404, "", ""},
		{"GET", "/v2/arm64/curl/manifests/latest", 404, "MANIFEST_UNKNOWN", "aarch64-linux"},
		// Digests are checked before they reach the store.
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
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
			}
			if tt.code == "" {
				return
			}
			code, msg := errorCode(t, r)
			if code != tt.code {
				t.Errorf("code %s, want %s (message %q)", code, tt.code, msg)
			}
			if !strings.Contains(msg, tt.message) {
				t.Errorf("message %q does not contain %q", msg, tt.message)
			}
			if tt.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow header")
			}
		})
	}
	// Of all the requests above only the ones with well-formed names and
	// tags reached the realiser: shell, the unknown packages (twice) and arm64.
	if got := f.real.runs.Load(); got != 4 {
		t.Errorf("realiser ran %d times, want 4", got)
	}
}

func TestBuildFailures(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()

	nixLog := "building '/nix/store/xxx-curl.drv'...\nline 2\nerror: builder for '/nix/store/xxx-curl.drv' failed with exit code 1"
	f.real.err = &nix.BuildError{Op: "build", Err: errors.New("exit status 1"), Log: nixLog}
	r := do(t, srv, "GET", "/v2/curl/manifests/latest", nil)
	if r.status != 500 {
		t.Fatalf("build failure: status %d", r.status)
	}
	code, msg := errorCode(t, r)
	if code != "UNKNOWN" || strings.Contains(msg, "line 2") || !strings.Contains(msg, "build failed") {
		t.Errorf("build failure: %s %q", code, msg)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "line 2") || !strings.Contains(logs, "exit code 1") {
		t.Errorf("the server log lacks the Nix log:\n%s", logs)
	}

	f.real.err = fmt.Errorf("nix-build: %w", nix.ErrTimeout)
	r = do(t, srv, "GET", "/v2/curl/manifests/latest", nil)
	if r.status != 503 {
		t.Fatalf("timeout: status %d", r.status)
	}
	if code, msg := errorCode(t, r); code != "UNAVAILABLE" || !strings.Contains(msg, "timed out") {
		t.Errorf("timeout: %s %q", code, msg)
	}

	f.real.err = fmt.Errorf("%w", nix.ErrNixNotFound)
	r = do(t, srv, "GET", "/v2/curl/manifests/latest", nil)
	if code, msg := errorCode(t, r); r.status != 500 || !strings.Contains(msg, "not installed") {
		t.Errorf("nix missing: %d %s %q", r.status, code, msg)
	}

	// Failures are not cached: the server keeps serving and builds once
	// Nix works again.
	f.real.err = nil
	r = do(t, srv, "GET", "/v2/curl/manifests/latest", nil)
	if r.status != 200 {
		t.Fatalf("after failures: status %d %s", r.status, r.body)
	}
	if got := f.real.runs.Load(); got != 4 {
		t.Errorf("realiser ran %d times, want 4", got)
	}
}

func TestNixTimeoutKeepsServing(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	if r := do(t, srv, "GET", "/v2/hello/manifests/latest", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	f.real.block = make(chan struct{}) // Nix hangs until its context ends
	f.real.err = nil
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v2/curl/manifests/latest", nil)
	if _, err := srv.Client().Do(req); err == nil {
		t.Fatal("a hanging build answered")
	}
	// Cached images are still served while the build hangs.
	if r := do(t, srv, "GET", "/v2/hello/manifests/latest", nil); r.status != 200 {
		t.Fatalf("cached image while a build hangs: %d", r.status)
	}
	close(f.real.block)
}

// manifestJSON is the part of a manifest the tests look at.
type manifestJSON struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType"`
	Config        struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestManifests(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()

	var got [2]manifestJSON
	for i, accept := range []string{acceptDocker, acceptOCI} {
		r := do(t, srv, "GET", "/v2/shell/curl/manifests/latest", map[string]string{"Accept": accept})
		if r.status != 200 {
			t.Fatalf("%s: %d %s", accept, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != accept {
			t.Errorf("Content-Type %q, want %q", ct, accept)
		}
		if d := r.header.Get("Docker-Content-Digest"); d != sha(r.body) {
			t.Errorf("Docker-Content-Digest %s, body hashes to %s", d, sha(r.body))
		}
		if cl := r.header.Get("Content-Length"); cl != fmt.Sprint(len(r.body)) {
			t.Errorf("Content-Length %s, body %d", cl, len(r.body))
		}
		if err := json.Unmarshal(r.body, &got[i]); err != nil {
			t.Fatal(err)
		}
		if got[i].MediaType != accept || got[i].SchemaVersion != 2 {
			t.Errorf("manifest mediaType %q schemaVersion %d", got[i].MediaType, got[i].SchemaVersion)
		}

		// HEAD: same headers, no body, no rebuild.
		runs := f.real.runs.Load()
		h := do(t, srv, "HEAD", "/v2/shell/curl/manifests/latest", map[string]string{"Accept": accept})
		if h.status != 200 || len(h.body) != 0 || h.header.Get("Docker-Content-Digest") != r.header.Get("Docker-Content-Digest") ||
			h.header.Get("Content-Length") != r.header.Get("Content-Length") || h.header.Get("Content-Type") != accept {
			t.Errorf("HEAD: %d %v", h.status, h.header)
		}
		// By digest, whatever the Accept header says.
		d := do(t, srv, "GET", "/v2/shell/curl/manifests/"+sha(r.body), nil)
		if d.status != 200 || string(d.body) != string(r.body) || d.header.Get("Content-Type") != accept {
			t.Errorf("by digest: %d %q", d.status, d.header.Get("Content-Type"))
		}
		if f.real.runs.Load() != runs {
			t.Error("HEAD or GET by digest ran Nix again")
		}
	}
	if got[0].Config.MediaType != MediaTypeDockerConfig || got[1].Config.MediaType != MediaTypeOCIConfig {
		t.Errorf("config media types %q %q", got[0].Config.MediaType, got[1].Config.MediaType)
	}
	if got[0].Config.Digest != got[1].Config.Digest {
		t.Error("the two formats have different configs")
	}
	if len(got[0].Layers) != len(got[1].Layers) || len(got[0].Layers) != 6 {
		t.Fatalf("layers: %d and %d, want 6 (MaxLayers)", len(got[0].Layers), len(got[1].Layers))
	}
	for i := range got[0].Layers {
		if got[0].Layers[i].Digest != got[1].Layers[i].Digest {
			t.Errorf("layer %d differs between formats", i)
		}
		if got[0].Layers[i].MediaType != MediaTypeDockerLayer || got[1].Layers[i].MediaType != MediaTypeOCILayer {
			t.Errorf("layer %d media types %q %q", i, got[0].Layers[i].MediaType, got[1].Layers[i].MediaType)
		}
	}
	if f.real.runs.Load() != 1 {
		t.Errorf("realiser ran %d times, want 1", f.real.runs.Load())
	}
	// curl/shell and SHELL-less permutations: same packages, same image.
	r := do(t, srv, "GET", "/v2/curl/shell/curl/manifests/latest", map[string]string{"Accept": acceptDocker})
	if sha(r.body) != got0Digest(t, srv, "/v2/shell/curl/manifests/latest") {
		t.Error("curl/shell/curl and shell/curl differ")
	}
	if f.real.runs.Load() != 1 {
		t.Errorf("a permutation of the name ran Nix again")
	}
}

func got0Digest(t *testing.T, srv *httptest.Server, p string) string {
	r := do(t, srv, "HEAD", p, map[string]string{"Accept": acceptDocker})
	return r.header.Get("Docker-Content-Digest")
}

func TestBlobs(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	r := do(t, srv, "GET", "/v2/curl/manifests/latest", nil)
	var m manifestJSON
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]string{m.Config.Digest}, m.Layers[0].Digest) {
		b := do(t, srv, "GET", "/v2/any/name/blobs/"+d, nil)
		if b.status != 200 || sha(b.body) != d || b.header.Get("Docker-Content-Digest") != d ||
			b.header.Get("Content-Length") != fmt.Sprint(len(b.body)) || b.header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("GET blob %s: %d %v", d, b.status, b.header)
		}
		h := do(t, srv, "HEAD", "/v2/curl/blobs/"+d, nil)
		if h.status != 200 || len(h.body) != 0 || h.header.Get("Content-Length") != fmt.Sprint(len(b.body)) {
			t.Errorf("HEAD blob: %d %v", h.status, h.header)
		}
		rg := do(t, srv, "GET", "/v2/curl/blobs/"+d, map[string]string{"Range": "bytes=2-9"})
		if rg.status != 206 || string(rg.body) != string(b.body[2:10]) ||
			rg.header.Get("Content-Range") != fmt.Sprintf("bytes 2-9/%d", len(b.body)) {
			t.Errorf("Range: %d %q %v", rg.status, rg.body, rg.header)
		}
		bad := do(t, srv, "GET", "/v2/curl/blobs/"+d, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(b.body)+10)})
		if bad.status != 416 {
			t.Errorf("unsatisfiable Range: %d", bad.status)
		}
	}
	// The config is the config for amd64 with the expected environment.
	c := do(t, srv, "GET", "/v2/curl/blobs/"+m.Config.Digest, nil)
	var cfg struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Created      string `json:"created"`
		Config       struct {
			Env []string `json:"Env"`
			Cmd []string `json:"Cmd"`
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			Created string `json:"created"`
		} `json:"history"`
	}
	// Kubernetes once refused upstream Nixery's images for want of a
	// "config" object (tazjin/nixery#1): it must always be there.
	if !strings.Contains(string(c.body), `"config":{"Env":[`) {
		t.Errorf("config lacks a config object with Env: %s", c.body)
	}
	if err := json.Unmarshal(c.body, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || cfg.Created != "1970-01-01T00:00:01Z" ||
		cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(cfg.History) != len(m.Layers) ||
		cfg.Config.Cmd != nil {
		t.Errorf("config: %s", c.body)
	}
	wantEnv := []string{"PATH=/bin:/usr/bin:/sbin", "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"}
	if fmt.Sprint(cfg.Config.Env) != fmt.Sprint(wantEnv) {
		t.Errorf("Env %q", cfg.Config.Env)
	}
}

func TestTags(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	for q, want := range map[string]string{
		"":                   `{"name":"shell/curl","tags":["latest"]}`,
		"?n=0":               `{"name":"shell/curl","tags":[]}`,
		"?n=10":              `{"name":"shell/curl","tags":["latest"]}`,
		"?last=latest":       `{"name":"shell/curl","tags":[]}`,
		"?n=1&last=aardvark": `{"name":"shell/curl","tags":["latest"]}`,
	} {
		r := do(t, srv, "GET", "/v2/shell/curl/tags/list"+q, nil)
		if r.status != 200 || string(r.body) != want {
			t.Errorf("tags%s: %d %s, want %s", q, r.status, r.body, want)
		}
	}
	if f.real.runs.Load() != 0 {
		t.Error("the tag list ran Nix")
	}
}

// TestRemote pulls images through go-containerregistry's client, in both
// formats, and validates them (digests, diffIDs, sizes, tar contents).
func TestRemote(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.OCIManifestSchema1} {
		ref, err := name.ParseReference(host + "/shell/git:latest")
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, remote.WithTransport(srv.Client().Transport), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}),
			remoteAccept(mt))
		if err != nil {
			t.Fatal(err)
		}
		if desc.MediaType != mt {
			t.Errorf("asked for %s, got %s", mt, desc.MediaType)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: validate: %v", mt, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(cfg.Config.Cmd) != "[bash]" {
			t.Errorf("Cmd %q", cfg.Config.Cmd)
		}
		// The customisation layer is last and holds the forest.
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := ls[len(ls)-1].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		files := tarEntries(t, rc)
		rc.Close()
		if files["bin/git"] != "-> "+storePath("git")+"/bin/git" {
			t.Errorf("bin/git: %q in %v", files["bin/git"], files)
		}
	}
}

// remoteAccept asks go-containerregistry's client for one manifest type
// only, by rewriting the Accept header.
func remoteAccept(mt types.MediaType) remote.Option {
	return remote.WithTransport(acceptTransport{mt: string(mt)})
}

type acceptTransport struct{ mt string }

func (a acceptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/manifests/") {
		req = req.Clone(req.Context())
		req.Header.Set("Accept", a.mt)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// tarEntries lists a layer's entries: files map to their contents,
// symlinks to "-> target", directories to their mode.
func tarEntries(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if _, dup := out[name]; dup {
			t.Errorf("duplicate entry %s", name)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[name] = "-> " + h.Linkname
		case tar.TypeDir:
			out[name] = fmt.Sprintf("dir %o", h.Mode)
		default:
			b, _ := io.ReadAll(tr)
			out[name] = string(b)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(Created) {
			t.Errorf("%s: uid %d gid %d mtime %v", name, h.Uid, h.Gid, h.ModTime)
		}
	}
}

func TestConcurrentBuildsOnce(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	f.real.delay = 50 * time.Millisecond
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	const n = 50
	var wg sync.WaitGroup
	digests := make([]string, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			method := "GET"
			if i%5 == 0 {
				method = "HEAD"
			}
			req, _ := http.NewRequest(method, srv.URL+"/v2/shell/git/manifests/latest", nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
			digests[i] = resp.Header.Get("Docker-Content-Digest")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := f.real.runs.Load(); got != 1 {
		t.Errorf("%d concurrent requests ran Nix %d times, want 1", n, got)
	}
	max, total := f.lay.maxBuilds()
	if max != 1 || total != 5 { // MaxLayers 6 = 5 store path layers + customisation
		t.Errorf("layers built: at most %d times each, %d builds; want 1 and 5", max, total)
	}
	for _, d := range digests {
		if d != digests[0] {
			t.Fatalf("different digests: %s %s", d, digests[0])
		}
	}
	if s := f.reg.Stats(); s.NixRuns != 1 || s.LayerBuilds != 5 {
		t.Errorf("Stats %+v", s)
	}
}

// TestSharedLayersAcrossImages builds two images at once that share store
// paths: each shared layer is built once.
func TestSharedLayersAcrossImages(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	layersOf := func(p string) map[string]bool {
		var m manifestJSON
		if err := json.Unmarshal(do(t, srv, "GET", p, nil).body, &m); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, l := range m.Layers {
			out[l.Digest] = true
		}
		return out
	}
	a, b := layersOf("/v2/curl/manifests/latest"), layersOf("/v2/git/manifests/latest")
	shared := 0
	for d := range a {
		if b[d] {
			shared++
		}
	}
	if shared == 0 {
		t.Error("curl and git share no layer")
	}
	if max, _ := f.lay.maxBuilds(); max != 1 {
		t.Errorf("a layer was built %d times", max)
	}
}

func TestUnpinnedRebuilds(t *testing.T) {
	f := newFixture(t, fakeSource{unpinned: true}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	r1 := do(t, srv, "GET", "/v2/hello/manifests/latest", nil)
	r2 := do(t, srv, "GET", "/v2/hello/manifests/latest", nil)
	if r1.status != 200 || r2.status != 200 || sha(r1.body) != sha(r2.body) {
		t.Fatalf("%d %d", r1.status, r2.status)
	}
	if got := f.real.runs.Load(); got != 2 {
		t.Errorf("unpinned source: Nix ran %d times for two requests, want 2", got)
	}
	// The manifest is still reachable by digest.
	if r := do(t, srv, "GET", "/v2/hello/manifests/"+sha(r1.body), nil); r.status != 200 {
		t.Errorf("by digest: %d", r.status)
	}
	if got := f.real.runs.Load(); got != 2 {
		t.Errorf("by digest ran Nix")
	}
}

func TestLatestOnly(t *testing.T) {
	f := newFixture(t, LatestOnly(fakeSource{git: true}), nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	if r := do(t, srv, "GET", "/v2/hello/manifests/latest", nil); r.status != 200 {
		t.Fatalf("latest: %d", r.status)
	}
	for _, tag := range []string{"missing-yeoh3t27", strings.Repeat("ab", 20)} {
		r := do(t, srv, "GET", "/v2/hello/manifests/"+tag, nil)
		if code, msg := errorCode(t, r); r.status != 404 || code != "MANIFEST_UNKNOWN" || !strings.Contains(msg, "only the tag") {
			t.Errorf("%s: %d %s %s", tag, r.status, code, msg)
		}
	}
	if f.real.runs.Load() != 1 {
		t.Errorf("Nix ran %d times", f.real.runs.Load())
	}
}

func TestGitTags(t *testing.T) {
	f := newFixture(t, fakeSource{git: true}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	commit := strings.Repeat("ab", 20)
	if r := do(t, srv, "GET", "/v2/hello/manifests/"+commit, nil); r.status != 200 {
		t.Fatalf("commit tag: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v2/hello/manifests/main", nil); r.status != 404 {
		t.Fatalf("unknown ref: %d %s", r.status, r.body)
	}
}

func TestRestartPersistence(t *testing.T) {
	dir := t.TempDir()
	store := newMemStore()
	f1 := newFixture(t, fakeSource{}, store, dir)
	srv1 := httptest.NewServer(f1.reg)
	docker := do(t, srv1, "GET", "/v2/shell/curl/manifests/latest", nil)
	oci := do(t, srv1, "GET", "/v2/shell/curl/manifests/latest", map[string]string{"Accept": acceptOCI})
	srv1.Close()
	f1.reg.Close()

	f2 := newFixture(t, fakeSource{}, store, dir)
	srv2 := httptest.NewServer(f2.reg)
	defer srv2.Close()
	for _, r := range []response{docker, oci} {
		d := do(t, srv2, "GET", "/v2/shell/curl/manifests/"+sha(r.body), nil)
		if d.status != 200 || string(d.body) != string(r.body) {
			t.Errorf("after restart, by digest: %d", d.status)
		}
	}
	if r := do(t, srv2, "GET", "/v2/curl/shell/manifests/latest", map[string]string{"Accept": acceptOCI}); string(r.body) != string(oci.body) {
		t.Errorf("after restart, by tag: %d %s", r.status, r.body)
	}
	if got := f2.real.runs.Load(); got != 0 {
		t.Errorf("after restart Nix ran %d times", got)
	}
	// A damaged record is skipped, not fatal.
	entries, _ := filepathGlob(dir + "/images/*.json")
	if len(entries) != 1 {
		t.Fatalf("index files: %v", entries)
	}
	writeFile(t, entries[0], "{not json")
	f3 := newFixture(t, fakeSource{}, store, dir)
	srv3 := httptest.NewServer(f3.reg)
	defer srv3.Close()
	if r := do(t, srv3, "GET", "/v2/shell/curl/manifests/latest", nil); r.status != 200 || f3.real.runs.Load() != 1 {
		t.Errorf("damaged index: %d, %d runs", r.status, f3.real.runs.Load())
	}
}

func TestRequestLog(t *testing.T) {
	f := newFixture(t, fakeSource{}, nil, "")
	srv := httptest.NewServer(f.reg)
	defer srv.Close()
	do(t, srv, "GET", "/v2/hello/manifests/latest", nil)
	// The line is logged just after the response is sent.
	var logs string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if logs = f.logs.String(); strings.Contains(logs, "msg=request") {
			break
		}
	}
	for _, want := range []string{
		"msg=request method=GET path=/v2/hello/manifests/latest status=200 bytes=",
		"msg=build image=hello tag=latest packages=\"[cacert hello iana-etc]\" system=x86_64-linux paths=4 layers=5 layer_cache_hits=0 bytes=",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		accept []string
		want   format
	}{
		{nil, formatDocker},
		{[]string{"*/*"}, formatDocker},
		{[]string{acceptOCI}, formatOCI},
		{[]string{acceptDocker}, formatDocker},
		{[]string{acceptOCI + ", " + acceptDocker}, formatOCI},
		{[]string{acceptDocker, acceptOCI}, formatDocker},
		{[]string{acceptDocker + ";q=0.5, " + acceptOCI}, formatOCI},
		{[]string{acceptOCI + ";q=0"}, formatDocker},
		{[]string{"application/vnd.docker.distribution.manifest.list.v2+json, " + acceptOCI}, formatOCI},
		{[]string{"garbage;;;", acceptOCI}, formatOCI},
	}
	for _, tt := range tests {
		if got := negotiate(tt.accept); got != tt.want {
			t.Errorf("negotiate(%q) = %v, want %v", tt.accept, got, tt.want)
		}
	}
}

func gunzip(t *testing.T, r io.Reader) io.Reader {
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	return zr
}
