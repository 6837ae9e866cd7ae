package images

// Tests through the registry's HTTP handler: what a client sees of the
// builder's images and errors.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/registry"
)

func serveFixture(t *testing.T, nx *fakenix.Nix) (*fixture, *httptest.Server) {
	f := newFixture(t, nx, nil, "")
	reg := registry.New(f.b, registry.WithLogger(f.b.log))
	t.Cleanup(func() { reg.Close() })
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return f, srv
}

func do(t *testing.T, srv *httptest.Server, method, path string, hdr map[string]string) testutil.Response {
	t.Helper()
	return testutil.Do(t, srv.Client(), method, srv.URL+path, hdr)
}

// TestHTTPErrors: what clients see of bad names, unknown packages, tags
// and digests, and failed builds; only well-formed requests reach Nix.
func TestHTTPErrors(t *testing.T) {
	f, srv := serveFixture(t, nil)
	zero := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		path    string
		status  int
		code    string
		message string
	}{
		{"/v2/" + url.PathEscape(`${builtins.readFile "/etc/passwd"}`) + "/manifests/latest", 400, "NAME_INVALID", ""},
		{"/v2/x;y/manifests/latest", 400, "NAME_INVALID", ""},
		{"/v2/curl/../etc/manifests/latest", 400, "NAME_INVALID", ""},
		{"/v2/a'b/manifests/latest", 400, "NAME_INVALID", ""},
		{"/v2/" + strings.Repeat("hello/", 200) + "hello/manifests/latest", 400, "NAME_INVALID", "limit"},
		{"/v2/" + strings.Repeat("a/", 64) + "a/manifests/latest", 400, "NAME_INVALID", "limit of 64 packages"},
		{"/v2/arm64/manifests/latest", 400, "NAME_INVALID", "no packages"},
		{"/v2/shell/manifests/latest", 200, "", ""},
		{"/v2/curl/doesnotexist/alsomissing/manifests/latest", 404, "MANIFEST_UNKNOWN", "unknown packages: alsomissing, doesnotexist"},
		{"/v2/curl/manifests/" + zero, 404, "MANIFEST_UNKNOWN", "unknown to registry"},
		{"/v2/curl/manifests/v1.0", 404, "MANIFEST_UNKNOWN", `"v1.0"`},
		{"/v2/curl/manifests/-bad", 404, "MANIFEST_UNKNOWN", `"-bad"`},
		{"/v2/curl/manifests/.INVALID_MANIFEST_NAME", 404, "MANIFEST_UNKNOWN", ".INVALID_MANIFEST_NAME"}, // the conformance suite's
		{"/v2/curl/blobs/" + zero, 404, "BLOB_UNKNOWN", ""},
		{"/v2/arm64/curl/manifests/latest", 404, "MANIFEST_UNKNOWN", "aarch64-linux"},
	}
	for _, tt := range tests {
		t.Run(tt.path[:min(len(tt.path), 60)], func(t *testing.T) {
			r := do(t, srv, "GET", tt.path, nil)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			if tt.code == "" {
				return
			}
			if code, msg := r.RegistryError(t); code != tt.code || !strings.Contains(msg, tt.message) {
				t.Errorf("%s %q, want %s with %q", code, msg, tt.code, tt.message)
			}
		})
	}
	// Of all these only shell, the unknown packages and arm64/curl reached
	// Nix: tags, digests and names are checked first.
	if got := f.nix.Runs.Load(); got != 3 {
		t.Errorf("Nix ran %d times, want 3", got)
	}

	f.nix.Err = &nix.BuildError{Op: "build", Err: fmt.Errorf("exit status 1"),
		Log: "building '/nix/store/xxx-curl.drv'...\nline 2\nerror: builder for '/nix/store/xxx-curl.drv' failed with exit code 1"}
	r := do(t, srv, "GET", "/v2/curl/manifests/latest", nil)
	if code, msg := r.RegistryError(t); r.Status != 500 || code != "UNKNOWN" || strings.Contains(msg, "line 2") || !strings.Contains(msg, "build failed") {
		t.Errorf("build failure: %d %s %q", r.Status, code, msg)
	}
	// Other names: the failure of curl is remembered for a while.
	f.nix.Err = fmt.Errorf("nix-build: %w", nix.ErrTimeout)
	r = do(t, srv, "GET", "/v2/hello/manifests/latest", nil)
	if code, msg := r.RegistryError(t); r.Status != 503 || code != "UNAVAILABLE" || !strings.Contains(msg, "timed out") || r.Header.Get("Retry-After") == "" {
		t.Errorf("timeout: %d %s %q, Retry-After %q", r.Status, code, msg, r.Header.Get("Retry-After"))
	}
	f.nix.Err = &nix.BusyError{Running: 2, Queued: 32, After: 42 * time.Second}
	r = do(t, srv, "GET", "/v2/hello/manifests/latest", nil)
	if code, msg := r.RegistryError(t); r.Status != 503 || code != "UNAVAILABLE" || !strings.Contains(msg, "too many builds") || r.Header.Get("Retry-After") != "42" {
		t.Errorf("queue full: %d %s %q, Retry-After %q", r.Status, code, msg, r.Header.Get("Retry-After"))
	}
	f.nix.Err = fmt.Errorf("%w", nix.ErrNixNotFound)
	r = do(t, srv, "GET", "/v2/git/manifests/latest", nil)
	if code, msg := r.RegistryError(t); r.Status != 500 || code != "UNKNOWN" || !strings.Contains(msg, "not installed") {
		t.Errorf("nix missing: %d %s %q", r.Status, code, msg)
	}
}

// TestRemote pulls images through go-containerregistry's client, in both
// formats, and validates them (digests, diffIDs, sizes, tar contents).
func TestRemote(t *testing.T) {
	_, srv := serveFixture(t, nil)
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, mt := range []types.MediaType{types.DockerManifestSchema2, types.OCIManifestSchema1} {
		ref, err := name.ParseReference(host + "/shell/git:latest")
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, remote.WithTransport(acceptTransport{mt: string(mt)}), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
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

// acceptTransport asks for one manifest type only, by rewriting the Accept
// header of go-containerregistry's client.
type acceptTransport struct{ mt string }

func (a acceptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/manifests/") {
		req = req.Clone(req.Context())
		req.Header.Set("Accept", a.mt)
	}
	return http.DefaultTransport.RoundTrip(req)
}
