package nix

import (
	"net/url"
	"strings"
)

// Provenance returns where the package set that tag selects comes from and
// its pinned revision, for an image's org.opencontainers.image.source and
// .revision annotations: a git source's URL and, for a commit tag, the
// commit; a channel's tarball URL and, when it names one, its commit.
// The bundled set and a local path say nothing (their contents are in
// the image key; a local path is no source anyone else can fetch). It
// asks nothing of Nix.
func (b *Builder) Provenance(tag string) (source, revision string) {
	return SourceProvenance(b.src, tag)
}

// SourceProvenance is [Builder.Provenance] for a source.
func SourceProvenance(src Source, tag string) (source, revision string) {
	switch s := src.(type) {
	case *GitSource:
		if commitRE.MatchString(tag) {
			revision = tag
		}
		return withoutUserinfo(s.url), revision
	case *ChannelSource:
		if s.pinned {
			revision = commitOfURL(s.url)
		}
		return withoutUserinfo(s.url), revision
	}
	return "", ""
}

// commitOfURL returns the 40-hex commit a tarball URL's path carries
// (…/archive/<commit>.tar.gz), or "".
func commitOfURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	m := commitInURL.FindString(u.Path)
	return strings.Trim(m, "/")[:min(40, len(strings.Trim(m, "/")))]
}

// withoutUserinfo drops a user name and password from a URL, which an
// annotation must not show.
func withoutUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}
