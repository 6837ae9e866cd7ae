package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nixery-go/nixery/nix"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		name     string
		packages string // space separated; "" for an error
		system   string
		cmd      string
	}{
		{"curl", "cacert curl iana-etc", SystemAMD64, "[]"},
		{"shell", "bashInteractive cacert coreutils iana-etc moreutils nano", SystemAMD64, "[bash]"},
		{"shell/curl", "bashInteractive cacert coreutils curl iana-etc moreutils nano", SystemAMD64, "[bash]"},
		{"curl/shell/curl", "bashInteractive cacert coreutils curl iana-etc moreutils nano", SystemAMD64, "[bash]"},
		{"arm64/curl", "cacert curl iana-etc", SystemARM64, "[]"},
		{"bashinteractive/jq", "bashinteractive cacert iana-etc jq", SystemAMD64, "[]"},
		{"python3Packages.numpy", "cacert iana-etc python3Packages.numpy", SystemAMD64, "[]"},
		{"cacert", "cacert iana-etc", SystemAMD64, "[]"},
		{"7zip", "7zip cacert iana-etc", SystemAMD64, "[]"},
		{"foo-bar/foo_bar/foo__bar/foo--bar", "cacert foo--bar foo-bar foo__bar foo_bar iana-etc", SystemAMD64, "[]"},
		{"arm64", "", "", ""},
		{"", "", "", ""},
		{"curl/", "", "", ""},
		{"/curl", "", "", ""},
		{"a..b", "", "", ""},
		{"a.", "", "", ""},
		{"a___b", "", "", ""},
		{"a_-b", "", "", ""},
		{"x;y", "", "", ""},
		{"${x}", "", "", ""},
		{`a"b`, "", "", ""},
		{"a'b", "", "", ""}, // valid Nix, not a valid repository name
		{"héllo", "", "", ""},
		{strings.Repeat("a", 129), "", "", ""},       // nix.MaxNameLength
		{strings.Repeat("a/", 64) + "a", "", "", ""}, // 65 components
	}
	for _, tt := range tests {
		img, err := ParseName(tt.name, 0, 0)
		if tt.packages == "" {
			var re *Error
			if err == nil || !errors.As(err, &re) || re.Code != CodeNameInvalid {
				t.Errorf("ParseName(%q) = %v, %v; want NAME_INVALID", tt.name, img, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseName(%q): %v", tt.name, err)
			continue
		}
		if got := strings.Join(img.Packages, " "); got != tt.packages || img.System != tt.system || fmt.Sprint(img.Cmd) != tt.cmd {
			t.Errorf("ParseName(%q) = %q %s %v, want %q %s %s", tt.name, got, img.System, img.Cmd, tt.packages, tt.system, tt.cmd)
		}
	}
	// Limits are configurable.
	if _, err := ParseName("a/b/c", 0, 4); err == nil {
		t.Error("5 packages (with cacert and iana-etc) accepted under a limit of 4")
	}
	if _, err := ParseName("abcdef", 5, 0); err == nil {
		t.Error("6 characters accepted under a limit of 5")
	}
}

// FuzzParseName checks that whatever ParseName accepts is made of names
// that package nix accepts too, sorted and unique.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"shell/curl", "arm64/a.b", "${x}", "a/../b", "a__b-c.d", strings.Repeat("x/", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		img, err := ParseName(name, 0, 0)
		if err != nil {
			return
		}
		for i, p := range img.Packages {
			if err := nix.ValidateName(p); err != nil {
				t.Fatalf("%q: accepted package %q: %v", name, p, err)
			}
			if i > 0 && img.Packages[i-1] >= p {
				t.Fatalf("%q: packages not sorted and unique: %q", name, img.Packages)
			}
		}
		if checkRepoName(name, 0) != nil {
			t.Fatalf("%q accepted as an image but not as a repository name", name)
		}
	})
}

// FuzzHandler sends arbitrary paths and methods to the handler: it must
// never panic, every error must be the spec's JSON, and whatever reaches the
// realiser must be valid attribute names.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/hello/manifests/latest", "/v2/a/blobs/sha256:00", "/v2/a/blobs/uploads/",
		"/v2/x/tags/list?n=3", "/v2//manifests/", "/v2/${x}/manifests/latest", "/v2/a/../b/manifests/latest"} {
		f.Add("GET", s)
	}
	f.Add("DELETE", "/v2/hello/manifests/latest")
	fx := newFixture(f, fakeSource{}, nil, "")
	real := &checkingRealiser{inner: fx.real}
	fx.reg.cfg.Realiser = real
	f.Fuzz(func(t *testing.T, method, target string) {
		req, err := http.NewRequest(method, "http://registry.test"+target, nil)
		if err != nil || req.URL.Host != "registry.test" {
			return
		}
		w := httptest.NewRecorder()
		fx.reg.ServeHTTP(w, req)
		if w.Code >= 400 && method != http.MethodHead {
			var body struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code == "" {
				t.Fatalf("%s %q: status %d with body %q", method, target, w.Code, w.Body.Bytes())
			}
		}
		if bad := real.bad.Load(); bad != nil {
			t.Fatalf("%s %q: the realiser got %q", method, target, *bad)
		}
	})
}

// checkingRealiser records a package name that nix.ValidateName refuses.
type checkingRealiser struct {
	inner Realiser
	bad   atomic.Pointer[string]
}

func (c *checkingRealiser) Realise(ctx context.Context, req Request) (*Realised, error) {
	for _, p := range req.Packages {
		if nix.ValidateName(p) != nil {
			c.bad.Store(&p)
		}
	}
	return c.inner.Realise(ctx, req)
}
