package images

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/nixery-go/nixery/nix"
)

// DefaultMaxPackages bounds the packages of one image unless
// [Config.MaxPackages] says otherwise, so that one name cannot ask Nix for
// hundreds of packages.
const DefaultMaxPackages = 64

// Meta-packages: image name components that are not packages.
const (
	// MetaShell adds [ShellPackages] and sets the command to bash.
	MetaShell = "shell"
	// MetaARM64 builds the image for aarch64-linux.
	MetaARM64 = "arm64"
)

// AlwaysIncluded are added to every image: CA certificates (so TLS works and
// SSL_CERT_FILE points somewhere) and /etc/protocols and /etc/services.
var AlwaysIncluded = []string{"cacert", "iana-etc"}

// ShellPackages are what the meta-package "shell" expands to.
var ShellPackages = []string{"bashInteractive", "coreutils", "moreutils", "nano"}

// NameError reports an image name that names no image: empty, without
// packages, or over the limits. A component that is not an attribute path
// is a [*nix.InvalidNameError] instead. Both match fs.ErrInvalid.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	name := e.Name
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return fmt.Sprintf("images: invalid image name %q: %s", name, e.Reason)
}

// Is reports that a NameError is a case of fs.ErrInvalid.
func (e *NameError) Is(target error) bool { return target == fs.ErrInvalid }

// Request is what an image is made of.
type Request struct {
	// Packages are the attributes to put in the image as requested,
	// meta-packages expanded and [AlwaysIncluded] added, sorted and
	// de-duplicated. Package nix resolves them (case-insensitively, with
	// the "_" prefix for names that start with a digit); the image is made
	// of what they resolve to, so every spelling of a package gives the
	// same image.
	Packages []string
	// System is the Nix system to build for; empty means x86_64-linux.
	System string
	// Cmd is the image's default command, set by the "shell"
	// meta-package.
	Cmd []string
	// Tag selects the version of the package set (a git ref or commit);
	// empty means "latest".
	Tag string
}

// ParseName turns an image name such as "shell/curl" into a [Request] for
// tag "latest". Each "/"-separated component is an attribute path of the
// package set ("curl", "python3Packages.six"), checked with
// [nix.ValidateName], or a meta-package: "shell" adds [ShellPackages] and
// sets Cmd ["bash"]; "arm64" selects aarch64-linux. [AlwaysIncluded] is
// added and the list sorted and de-duplicated, so "curl/shell" is the same
// image as "shell/curl". maxPackages bounds the packages; zero means
// [DefaultMaxPackages].
//
// Errors wrap fs.ErrInvalid (a [*nix.InvalidNameError] for a bad
// component).
func ParseName(name string, maxPackages int) (*Request, error) {
	if maxPackages <= 0 {
		maxPackages = DefaultMaxPackages
	}
	if name == "" {
		return nil, &NameError{Name: name, Reason: "empty"}
	}
	if n := strings.Count(name, "/") + 1; n > maxPackages {
		return nil, &NameError{Name: name, Reason: fmt.Sprintf("%d components, more than the limit of %d packages", n, maxPackages)}
	}
	req := &Request{Tag: "latest"}
	var pkgs []string
	for _, comp := range strings.Split(name, "/") {
		switch comp {
		case MetaShell:
			pkgs = append(pkgs, ShellPackages...)
			req.Cmd = []string{"bash"}
			continue
		case MetaARM64:
			req.System = SystemARM64
			continue
		}
		if err := nix.ValidateName(comp); err != nil {
			return nil, err
		}
		pkgs = append(pkgs, comp)
	}
	if len(pkgs) == 0 {
		return nil, &NameError{Name: name, Reason: "it names no packages"}
	}
	req.Packages = pkgs
	return req.normalise(maxPackages)
}

// normalise adds AlwaysIncluded, sorts and de-duplicates the packages and
// checks the limits; it returns a copy.
func (r *Request) normalise(maxPackages int) (*Request, error) {
	if maxPackages <= 0 {
		maxPackages = DefaultMaxPackages
	}
	if len(r.Packages) == 0 {
		return nil, &NameError{Reason: "no packages requested"}
	}
	n := *r
	n.Packages = append(slices.Clone(r.Packages), AlwaysIncluded...)
	slices.Sort(n.Packages)
	n.Packages = slices.Compact(n.Packages)
	if len(n.Packages) > maxPackages {
		return nil, &NameError{Name: strings.Join(r.Packages, "/"), Reason: fmt.Sprintf("%d packages, more than the limit of %d", len(n.Packages), maxPackages)}
	}
	for _, p := range n.Packages {
		if err := nix.ValidateName(p); err != nil {
			return nil, err
		}
	}
	if n.System == "" {
		n.System = SystemAMD64
	}
	if n.Tag == "" {
		n.Tag = "latest"
	}
	return &n, nil
}
