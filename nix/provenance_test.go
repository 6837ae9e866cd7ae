package nix

import "testing"

func TestSourceProvenance(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	git, err := NewGitSource("https://user:secret@example.com/pkgs.git")
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := NewChannelSource(commit)
	if err != nil {
		t.Fatal(err)
	}
	channel, err := NewChannelSource("nixos-unstable")
	if err != nil {
		t.Fatal(err)
	}
	url, err := NewChannelSource("https://example.com/nixpkgs/archive/" + commit + ".tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	path, err := NewPathSource(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src              Source
		tag, source, rev string
	}{
		{git, commit, "https://example.com/pkgs.git", commit},
		{git, "main", "https://example.com/pkgs.git", ""},
		{git, "latest", "https://example.com/pkgs.git", ""},
		{pinned, "latest", "https://github.com/NixOS/nixpkgs/archive/" + commit + ".tar.gz", commit},
		{channel, "latest", "https://github.com/NixOS/nixpkgs/archive/nixos-unstable.tar.gz", ""},
		{url, "latest", "https://example.com/nixpkgs/archive/" + commit + ".tar.gz", commit},
		{path, "latest", "", ""},
	} {
		src, rev := SourceProvenance(c.src, c.tag)
		if src != c.source || rev != c.rev {
			t.Errorf("%v at %q: source %q revision %q, want %q %q", c.src, c.tag, src, rev, c.source, c.rev)
		}
	}
}
