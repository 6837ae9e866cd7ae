package nix

import (
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
)

// A Source is a nixpkgs-shaped package set: an expression that, called with
// { system = "..."; }, returns an attribute set of derivations. An image tag
// may select a version of it (a git ref or commit).
type Source interface {
	// CacheKey returns a key naming the package set that tag selects.
	// pinned reports whether the key always denotes the same package set
	// (a commit, a tarball URL carrying a commit, the bundled set); only
	// then may results be cached under it for good. A source with one
	// version serves only the tag "latest" (and the empty tag): any other
	// tag is an error wrapping [ErrUnknownTag]. A malformed tag is an error
	// wrapping [ErrInvalidTag].
	CacheKey(tag string) (key string, pinned bool, err error)

	// Import tells Nix where to find the package set for tag, preparing
	// local files first if the source needs any.
	Import(tag string) (Import, error)

	// String describes the source for logs and messages.
	String() string
}

// Import locates a package set in the form the resolver expression reads.
// It travels to Nix as JSON data.
type Import struct {
	// Kind is "path" (a directory on this machine), "tarball" (fetched
	// with builtins.fetchTarball) or "git" (fetched with builtins.fetchGit).
	Kind string `json:"kind"`
	Path string `json:"path,omitempty"` // kind "path": absolute directory
	URL  string `json:"url,omitempty"`  // kinds "tarball" and "git"
	Ref  string `json:"ref,omitempty"`  // kind "git": branch to fetch
	Rev  string `json:"rev,omitempty"`  // kind "git": 40-hex commit

	// Systems, when not empty, lists the only systems the set can build
	// for; other systems are an [*UnsupportedSystemError] before Nix runs.
	Systems []string `json:"-"`

	// Listable says that every top-level package of the set may be listed
	// and realised, so that the set's popularity can be computed from the
	// set itself (see [Builder.Popularity]). It is true for the bundled
	// set; a whole nixpkgs is too large for it.
	Listable bool `json:"-"`
}

// Environment variables read by [SourceFromEnv].
const (
	EnvPkgsPath = "NIXERY_PKGS_PATH"
	EnvChannel  = "NIXERY_CHANNEL"
	EnvPkgsRepo = "NIXERY_PKGS_REPO"
)

// SourceConfig chooses a package source. At most one of Path, Channel and
// Repo may be set; with none, the source is the package set bundled in the
// binary ([BundledSource]), extracted under BundledDir.
type SourceConfig struct {
	Path    string // a local tree ([PathSource]; NIXERY_PKGS_PATH)
	Channel string // a channel, commit or tarball URL ([ChannelSource]; NIXERY_CHANNEL)
	Repo    string // a git repository ([GitSource]; NIXERY_PKGS_REPO)
	// BundledDir is where the bundled set is extracted; empty means
	// "nixery" in the user's cache directory.
	BundledDir string
}

// NewSource returns the source c chooses.
func NewSource(c SourceConfig) (Source, error) {
	var set []string
	for _, v := range []struct{ name, value string }{{EnvPkgsPath, c.Path}, {EnvChannel, c.Channel}, {EnvPkgsRepo, c.Repo}} {
		if v.value != "" {
			set = append(set, v.name)
		}
	}
	if len(set) > 1 {
		return nil, fmt.Errorf("nix: only one package source may be configured, got %s", strings.Join(set, " and "))
	}
	switch {
	case c.Path != "":
		return NewPathSource(c.Path)
	case c.Channel != "":
		return NewChannelSource(c.Channel)
	case c.Repo != "":
		return NewGitSource(c.Repo)
	}
	return NewBundledSource(c.BundledDir)
}

// SourceFromEnv returns the source configured in the environment, as read
// by getenv:
//
//	NIXERY_PKGS_PATH=/src/nixpkgs          a local tree       ([PathSource])
//	NIXERY_CHANNEL=nixos-unstable          a channel or commit ([ChannelSource])
//	NIXERY_PKGS_REPO=https://.../nixpkgs   a git repository   ([GitSource])
//
// At most one of them may be set; with none, the source is the bundled set
// extracted under the user's cache directory. See [NewSource].
func SourceFromEnv(getenv func(string) string) (Source, error) {
	return NewSource(SourceConfig{Path: getenv(EnvPkgsPath), Channel: getenv(EnvChannel), Repo: getenv(EnvPkgsRepo)})
}

// ErrInvalidTag is returned (wrapped) for an image tag that cannot name a
// version of a package set. It matches fs.ErrNotExist: a malformed tag
// names no image.
var ErrInvalidTag error = notExist("nix: invalid tag")

// ErrUnknownTag is returned (wrapped) by a source with a single version
// for any tag but "latest". It matches fs.ErrNotExist.
var ErrUnknownTag error = notExist("nix: unknown tag")

// notExist is a sentinel error that matches fs.ErrNotExist.
type notExist string

func (e notExist) Error() string        { return string(e) }
func (e notExist) Is(target error) bool { return target == fs.ErrNotExist }

// checkLatest accepts only the tags of a source with a single version.
func checkLatest(tag string, src Source) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	if tag != "" && tag != "latest" {
		return fmt.Errorf("%w %q: the %s has only the tag \"latest\"", ErrUnknownTag, truncate(tag, 64), src)
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// tagRE is the grammar of Docker tags.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// commitRE matches a full git commit hash.
var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// commitInURL finds a 40-hex commit as a whole path component or a whole
// file name such as <commit>.tar.gz.
var commitInURL = regexp.MustCompile(`(^|/)[0-9a-f]{40}(\.tar(\.[a-z0-9]+)?|\.tgz|\.zip)?(/|$)`)

func checkTag(tag string) error {
	if tag == "" || tagRE.MatchString(tag) {
		return nil
	}
	return fmt.Errorf("%w %q: tags are 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'", ErrInvalidTag, truncate(tag, 64))
}

// PathSource is a package set in a local directory (NIXERY_PKGS_PATH). Its
// content may change at any time, so it is never pinned. It has one tag,
// "latest".
type PathSource struct {
	dir string
}

// NewPathSource returns a source for the package set in dir, which must be
// an absolute path (or is made one).
func NewPathSource(dir string) (*PathSource, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("nix: package set path %q: %w", dir, err)
	}
	return &PathSource{dir: abs}, nil
}

// CacheKey returns "path:" and the directory, never pinned.
func (s *PathSource) CacheKey(tag string) (string, bool, error) {
	if err := checkLatest(tag, s); err != nil {
		return "", false, err
	}
	return "path:" + s.dir, false, nil
}

// Import returns the directory.
func (s *PathSource) Import(tag string) (Import, error) {
	if err := checkLatest(tag, s); err != nil {
		return Import{}, err
	}
	return Import{Kind: "path", Path: s.dir}, nil
}

func (s *PathSource) String() string { return "path " + s.dir }

// ChannelSource is a nixpkgs channel, branch or commit fetched by Nix as a
// tarball (NIXERY_CHANNEL). A bare name such as nixos-unstable or a commit
// becomes https://github.com/NixOS/nixpkgs/archive/<name>.tar.gz; a value
// with a scheme (https://, file://) is used as the URL itself. It has one
// tag, "latest".
type ChannelSource struct {
	url    string
	pinned bool
}

// NewChannelSource returns a source for a channel name, commit or tarball
// URL. It is pinned when it is a 40-hex commit or a URL whose path carries
// one (…/archive/<commit>.tar.gz).
func NewChannelSource(channel string) (*ChannelSource, error) {
	if strings.Contains(channel, "://") {
		u, err := url.Parse(channel)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("nix: invalid channel URL %q", channel)
		}
		return &ChannelSource{url: channel, pinned: commitInURL.MatchString(u.Path)}, nil
	}
	if !tagRE.MatchString(channel) {
		return nil, fmt.Errorf("nix: invalid channel %q: expected a channel name, a commit or a URL", channel)
	}
	return &ChannelSource{
		url:    "https://github.com/NixOS/nixpkgs/archive/" + channel + ".tar.gz",
		pinned: commitRE.MatchString(channel),
	}, nil
}

// CacheKey returns "tarball:" and the URL, pinned when it names a commit.
func (s *ChannelSource) CacheKey(tag string) (string, bool, error) {
	if err := checkLatest(tag, s); err != nil {
		return "", false, err
	}
	return "tarball:" + s.url, s.pinned, nil
}

// Import returns the tarball URL.
func (s *ChannelSource) Import(tag string) (Import, error) {
	if err := checkLatest(tag, s); err != nil {
		return Import{}, err
	}
	return Import{Kind: "tarball", URL: s.url}, nil
}

func (s *ChannelSource) String() string { return "channel " + s.url }

// GitSource is a git repository holding a package set (NIXERY_PKGS_REPO).
// The image tag picks the version: a 40-hex tag is a commit (pinned), any
// other tag a branch name, and "latest" (or no tag) the repository's
// default branch.
type GitSource struct {
	url string
}

// NewGitSource returns a source for the repository at url (anything
// builtins.fetchGit accepts: https://, ssh://, file:// or a local path).
func NewGitSource(url string) (*GitSource, error) {
	if url == "" || strings.ContainsAny(url, "\n\x00") {
		return nil, fmt.Errorf("nix: invalid git repository %q", url)
	}
	return &GitSource{url: url}, nil
}

// CacheKey returns "git:<url>@<tag>"; pinned when tag is a commit.
func (s *GitSource) CacheKey(tag string) (string, bool, error) {
	if err := checkTag(tag); err != nil {
		return "", false, err
	}
	if tag == "" {
		tag = "latest"
	}
	return "git:" + s.url + "@" + tag, commitRE.MatchString(tag), nil
}

// Import returns the repository with the commit or branch tag selects.
func (s *GitSource) Import(tag string) (Import, error) {
	if err := checkTag(tag); err != nil {
		return Import{}, err
	}
	imp := Import{Kind: "git", URL: s.url}
	switch {
	case commitRE.MatchString(tag):
		imp.Rev = tag
	case tag != "" && tag != "latest":
		imp.Ref = tag
	}
	return imp, nil
}

func (s *GitSource) String() string { return "git " + s.url }
