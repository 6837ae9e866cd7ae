package images

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
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
		// Attribute paths that the repository grammar refuses (the
		// registry does) are still attribute paths.
		{"a'b", "a'b cacert iana-etc", SystemAMD64, "[]"},
		{"_1password", "_1password cacert iana-etc", SystemAMD64, "[]"},
		{"arm64", "", "", ""},
		{"", "", "", ""},
		{"curl/", "", "", ""},
		{"/curl", "", "", ""},
		{"a..b", "", "", ""},
		{"a.", "", "", ""},
		{"x;y", "", "", ""},
		{"${x}", "", "", ""},
		{`a"b`, "", "", ""},
		{"héllo", "", "", ""},
		{strings.Repeat("a", 129), "", "", ""},       // nix.MaxNameLength
		{strings.Repeat("a/", 64) + "a", "", "", ""}, // 65 components
	}
	for _, tt := range tests {
		req, err := ParseName(tt.name, 0)
		if tt.packages == "" {
			if err == nil || !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("ParseName(%q) = %v, %v; want an error matching fs.ErrInvalid", tt.name, req, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseName(%q): %v", tt.name, err)
			continue
		}
		if got := strings.Join(req.Packages, " "); got != tt.packages || req.System != tt.system || fmt.Sprint(req.Cmd) != tt.cmd || req.Tag != "latest" {
			t.Errorf("ParseName(%q) = %q %s %v %q, want %q %s %s latest", tt.name, got, req.System, req.Cmd, req.Tag, tt.packages, tt.system, tt.cmd)
		}
	}
	// The limit is configurable.
	if _, err := ParseName("a/b/c", 4); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("5 packages (with cacert and iana-etc) under a limit of 4: %v", err)
	}
}

// FuzzParseName checks that whatever ParseName accepts is made of names
// that package nix accepts too, sorted and unique, and that what it refuses
// is refused with an error matching fs.ErrInvalid.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"shell/curl", "arm64/a.b", "${x}", "a/../b", "a__b-c.d", strings.Repeat("x/", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		req, err := ParseName(name, 0)
		if err != nil {
			if !errors.Is(err, fs.ErrInvalid) {
				t.Fatalf("%q: error %v does not match fs.ErrInvalid", name, err)
			}
			return
		}
		for i, p := range req.Packages {
			if err := nix.ValidateName(p); err != nil {
				t.Fatalf("%q: accepted package %q: %v", name, p, err)
			}
			if i > 0 && req.Packages[i-1] >= p {
				t.Fatalf("%q: packages not sorted and unique: %q", name, req.Packages)
			}
		}
	})
}
