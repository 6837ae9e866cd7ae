package registry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nixery-go/nixery/nix"
)

// Limits on image names. MaxNameLength follows the distribution
// specification's advice that clients limit a repository name (with its host)
// to 255 characters; MaxPackages keeps one name from asking Nix for hundreds
// of packages.
const (
	DefaultMaxNameLength = 255
	DefaultMaxPackages   = 64
)

// Systems an image name can select.
const (
	SystemAMD64 = "x86_64-linux"
	SystemARM64 = "aarch64-linux"
)

// AlwaysIncluded are added to every image: CA certificates (so TLS works and
// SSL_CERT_FILE points somewhere) and /etc/protocols and /etc/services.
var AlwaysIncluded = []string{"cacert", "iana-etc"}

// ShellPackages are what the meta-package "shell" expands to.
var ShellPackages = []string{"bashInteractive", "coreutils", "moreutils", "nano"}

// Image is what an image name asks for.
type Image struct {
	// Name is the repository name as requested, e.g. "shell/curl".
	Name string
	// Packages are the top-level attributes to put in the image, meta
	// packages expanded, AlwaysIncluded added, sorted and de-duplicated.
	Packages []string
	// System is the Nix system to build for.
	System string
	// Cmd is the image's default command, set by the "shell" meta-package.
	Cmd []string
}

// ParseName turns a repository name into an [Image]. Each path component is
// a top-level (or dotted, nested) attribute of the package set, except for
// the meta-packages: "shell" adds [ShellPackages] and sets Cmd ["bash"];
// "arm64" selects aarch64-linux. Names are passed through in the case they
// arrive in: Docker lower-cases names, and package nix resolves
// "bashinteractive" to "bashInteractive".
//
// The name must follow the repository-name grammar of the distribution
// specification, relaxed to admit upper-case letters (other clients send
// attribute names as they are):
//
//	component ::= [a-zA-Z0-9]+ (("." | "_" | "__" | "-"+) [a-zA-Z0-9]+)*
//	name      ::= component ("/" component)*
//
// and each component must be a valid attribute path ([nix.ValidateName]).
// Errors are [*Error] values with code NAME_INVALID.
func ParseName(name string, maxLen, maxPackages int) (*Image, error) {
	if maxLen <= 0 {
		maxLen = DefaultMaxNameLength
	}
	if maxPackages <= 0 {
		maxPackages = DefaultMaxPackages
	}
	invalid := func(format string, args ...any) error {
		e := newError(CodeNameInvalid, format, args...)
		e.Detail = map[string]string{"name": truncate(name, 64)}
		return e
	}
	if name == "" {
		return nil, invalid("empty image name")
	}
	if len(name) > maxLen {
		return nil, invalid("image name is %d characters long, more than the limit of %d", len(name), maxLen)
	}
	if n := strings.Count(name, "/") + 1; n > maxPackages {
		return nil, invalid("image name has %d components, more than the limit of %d packages", n, maxPackages)
	}
	img := &Image{Name: name, System: SystemAMD64}
	var pkgs []string
	for _, comp := range strings.Split(name, "/") {
		if err := checkComponent(comp); err != nil {
			return nil, invalid("invalid component %q: %s", truncate(comp, 64), err)
		}
		switch comp {
		case "shell":
			pkgs = append(pkgs, ShellPackages...)
			img.Cmd = []string{"bash"}
			continue
		case "arm64":
			img.System = SystemARM64
			continue
		}
		if err := nix.ValidateName(comp); err != nil {
			return nil, invalid("invalid package name %q: %s", truncate(comp, 64), reason(err))
		}
		pkgs = append(pkgs, comp)
	}
	if len(pkgs) == 0 {
		return nil, invalid("image name %q names no packages", name)
	}
	pkgs = append(pkgs, AlwaysIncluded...)
	slices.Sort(pkgs)
	img.Packages = slices.Compact(pkgs)
	if len(img.Packages) > maxPackages {
		return nil, invalid("image has %d packages, more than the limit of %d", len(img.Packages), maxPackages)
	}
	return img, nil
}

// checkComponent checks one path component against the (case-relaxed)
// distribution grammar.
func checkComponent(c string) error {
	if c == "" {
		return fmt.Errorf("empty path component")
	}
	alnum := func(b byte) bool {
		return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
	}
	if !alnum(c[0]) || !alnum(c[len(c)-1]) {
		return fmt.Errorf("must start and end with a letter or digit")
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		switch {
		case alnum(b):
		case b == '.':
			if !alnum(c[i+1]) {
				return fmt.Errorf("'.' must be followed by a letter or digit")
			}
		case b == '_':
			if c[i+1] == '_' {
				i++
			}
			if !alnum(c[i+1]) {
				return fmt.Errorf("'_' or '__' must be followed by a letter or digit")
			}
		case b == '-':
			if c[i+1] != '-' && !alnum(c[i+1]) {
				return fmt.Errorf("'-' must be followed by '-', a letter or a digit")
			}
		default:
			return fmt.Errorf("character %q is not allowed", b)
		}
	}
	return nil
}

func reason(err error) string {
	if e, ok := err.(*nix.InvalidNameError); ok {
		return e.Reason
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// checkTag checks a tag against the distribution grammar
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. A malformed tag names no manifest, so
// it is MANIFEST_UNKNOWN (404), as in the reference registry and as the
// conformance suite expects.
func checkTag(tag string) error {
	bad := func() error {
		e := newError(CodeManifestUnknown, "manifest unknown: %q is not a valid tag", truncate(tag, 64))
		return e
	}
	if tag == "" || len(tag) > 128 {
		return bad()
	}
	for i := 0; i < len(tag); i++ {
		b := tag[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' ||
			i > 0 && (b == '.' || b == '-')
		if !ok {
			return bad()
		}
	}
	return nil
}
