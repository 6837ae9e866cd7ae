package images

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/internal/testutil/fakenix"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

func TestCustomisationLayer(t *testing.T) {
	var pkgs []nix.Package
	// Given in an order that is not sorted: the result must not depend on it.
	for _, n := range []string{"moreutils", "iana-etc", "coreutils", "cacert", "curl"} {
		pkgs = append(pkgs, nix.Package{Name: strings.ToLower(n), Attr: n, Path: storePath(n)})
	}
	tree, err := customisation(fakenix.StoreFS(), pkgs)
	if err != nil {
		t.Fatal(err)
	}
	store := newStore(t)
	fill := func(tw *tar.Writer) error { return writeTree(tw, "", tree) }
	desc, err := layers.WriteTarLayer(context.Background(), store, 0, fill)
	if err != nil {
		t.Fatal(err)
	}
	// Reversed input order, fresh store: byte-identical layer.
	for i, j := 0, len(pkgs)-1; i < j; i, j = i+1, j-1 {
		pkgs[i], pkgs[j] = pkgs[j], pkgs[i]
	}
	tree2, _ := customisation(fakenix.StoreFS(), pkgs)
	desc2, err := layers.WriteTarLayer(context.Background(), newStore(t), 0, func(tw *tar.Writer) error { return writeTree(tw, "", tree2) })
	if err != nil || desc2 != desc {
		t.Fatalf("customisation layer is not deterministic: %v %v (%v)", desc, desc2, err)
	}

	rc, _ := store.Open(context.Background(), desc.Digest)
	blob, _ := io.ReadAll(rc)
	if sha(blob) != desc.Digest.String() || int64(len(blob)) != desc.Size {
		t.Errorf("descriptor %v does not match the blob", desc)
	}
	tarBytes := testutil.Gunzip(t, blob)
	if sha(tarBytes) != desc.DiffID.String() {
		t.Errorf("DiffID %s, want %s", desc.DiffID, sha(tarBytes))
	}
	files := tarEntries(t, bytes.NewReader(tarBytes))
	want := map[string]string{
		"bin":               "dir 755",
		"bin/ls":            "-> " + storePath("coreutils") + "/bin/ls", // coreutils < moreutils
		"bin/sponge":        "-> " + storePath("moreutils") + "/bin/sponge",
		"bin/curl":          "-> " + storePath("curl") + "/bin/curl",
		"bin/env":           "-> " + storePath("coreutils") + "/bin/env",
		"share":             "dir 755",
		"share/doc":         "dir 755", // merged: several packages have share/doc
		"share/doc/curl":    "-> " + storePath("curl") + "/share/doc/curl",
		"etc":               "dir 755",
		"etc/ssl":           "-> " + storePath("cacert") + "/etc/ssl",
		"etc/services":      "-> " + storePath("iana-etc") + "/etc/services",
		"etc/protocols":     "-> " + storePath("iana-etc") + "/etc/protocols",
		"tmp":               "dir 1777",
		"usr":               "dir 755",
		"usr/bin":           "dir 755",
		"usr/bin/env":       "-> " + storePath("coreutils") + "/bin/env",
		"root":              "dir 700",
		"etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
	}
	for k, v := range want {
		if files[k] != v {
			t.Errorf("%s = %q, want %q", k, files[k], v)
		}
	}
	if !strings.HasPrefix(files["etc/passwd"], "root:x:0:0:") || !strings.Contains(files["etc/passwd"], "\nnobody:x:65534:65534:") {
		t.Errorf("etc/passwd = %q", files["etc/passwd"])
	}
	if !strings.HasPrefix(files["etc/group"], "root:x:0:") || !strings.Contains(files["etc/group"], "65534") {
		t.Errorf("etc/group = %q", files["etc/group"])
	}

	// Entries are sorted with parents first.
	prev := ""
	for _, e := range testutil.ReadLayer(t, blob) {
		h := e.Header
		if prev != "" && !(strings.TrimSuffix(prev, "/") < strings.TrimSuffix(h.Name, "/")) {
			t.Errorf("%q after %q", h.Name, prev)
		}
		prev = h.Name
	}
}
