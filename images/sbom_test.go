package images

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil/fakenix"
)

func TestParseStoreName(t *testing.T) {
	for _, c := range []struct{ in, name, version, output string }{
		{"glibc-2.36", "glibc", "2.36", ""},
		{"bash-interactive-5.2.15", "bash-interactive", "5.2.15", ""},
		{"nano-7.2-1+deb12u1", "nano", "7.2-1+deb12u1", ""},
		{"openssl-3.0.9-bin", "openssl", "3.0.9", "bin"},
		{"python3.11-six-1.16.0", "python3.11-six", "1.16.0", ""},
		{"nss-cacert-host", "nss-cacert-host", "", ""},
		{"hello", "hello", "", ""},
		{"libgcc-s1-12.2.0-14", "libgcc-s1", "12.2.0-14", ""},
		{"gcc-12-base-12.2.0-14", "gcc", "12-base-12.2.0-14", ""}, // as Nix's parseDrvName
	} {
		name, version, output := parseStoreName(c.in)
		if name != c.name || version != c.version || output != c.output {
			t.Errorf("%s: %q %q %q, want %q %q %q", c.in, name, version, output, c.name, c.version, c.output)
		}
	}
	if got := purl("libgcc-s1", "12.2.0-14+b1", "lib"); got != "pkg:nix/libgcc-s1@12.2.0-14%2Bb1?output=lib" {
		t.Errorf("purl %s", got)
	}
}

// TestNarHashHex: the three ways Nix prints one NAR hash (as `nix hash
// to-base32` and `to-base16` convert it) give the same hex digits.
func TestNarHashHex(t *testing.T) {
	const want = "d950f7e51fb37b6a12db0a1de4c6cf7bd7249fdcc722208b09bfd0761cd747de"
	for _, in := range []string{
		"sha256-2VD35R+ze2oS2wod5MbPe9ckn9zHIiCLCb/QdhzXR94=",
		"sha256:1pj7swf7dl5z165j08n7vjgj9mvvrz3f878avc96lyxk3zjzfl6r",
		"sha256:" + want,
	} {
		if got, err := narHashHex(in); got != want || err != nil {
			t.Errorf("%s: %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "md5:abc", "sha256-!!", "sha256:1pj7swf7dl5z165j08n7vjgj9mvvrz3f878avc96lyxk3zjzfl6e", "sha256:zzzz"} {
		if _, err := narHashHex(in); !errors.Is(err, errNarHash) {
			t.Errorf("%q: %v, want errNarHash", in, err)
		}
	}
}

// TestSBOM: an image's SBOM parses and validates with the SPDX tools; it has
// one package per store path of the closure, with the store path, its NAR
// hash and a purl, and a DEPENDS_ON for every reference; the same closure
// gives the same bytes in another builder.
func TestSBOM(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	img, err := f.b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	d, ok := img.SBOM()
	if !ok || d.MediaType != MediaTypeSPDX || sha(d.Data) != d.Digest.String() {
		t.Fatalf("SBOM %v %v", d, ok)
	}
	doc, err := spdxjson.Read(bytes.NewReader(d.Data))
	if err != nil {
		t.Fatal(err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("invalid SPDX document: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DocumentName != "cacert/git/iana-etc" || doc.CreationInfo.Created != "1970-01-01T00:00:01Z" {
		t.Errorf("document %q %q %q", doc.SPDXVersion, doc.DocumentName, doc.CreationInfo.Created)
	}
	closurePaths := []string{}
	for _, n := range []string{"cacert", "curl", "git", "glibc", "iana-etc", "openssl", "zlib"} {
		closurePaths = append(closurePaths, fakenix.StorePath(n))
	}
	slices.Sort(closurePaths)
	seen := map[string]int{}
	ids := map[string]string{} // SPDX id -> store path
	for _, p := range doc.Packages {
		if p.PackageFileName == "" {
			if p.PrimaryPackagePurpose != "CONTAINER" {
				t.Errorf("package %s without a store path", p.PackageSPDXIdentifier)
			}
			continue
		}
		seen[p.PackageFileName]++
		ids[string(p.PackageSPDXIdentifier)] = p.PackageFileName
		name := strings.TrimPrefix(closure.Name(p.PackageFileName), "")
		if p.PackageName != name { // the fake's names have no versions
			t.Errorf("%s: name %q", p.PackageFileName, p.PackageName)
		}
		if len(p.PackageChecksums) != 1 || p.PackageChecksums[0].Algorithm != "SHA256" {
			t.Errorf("%s: checksums %v", p.PackageFileName, p.PackageChecksums)
		} else if want, _ := narHashHex(fakenix.NarHash(name)); p.PackageChecksums[0].Value != want {
			t.Errorf("%s: checksum %s, want %s", p.PackageFileName, p.PackageChecksums[0].Value, want)
		}
		if len(p.PackageExternalReferences) != 1 || p.PackageExternalReferences[0].RefType != "purl" ||
			p.PackageExternalReferences[0].Locator != "pkg:nix/"+name {
			t.Errorf("%s: external refs %v", p.PackageFileName, p.PackageExternalReferences)
		}
	}
	var got []string
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s appears %d times", p, n)
		}
		got = append(got, p)
	}
	slices.Sort(got)
	if !slices.Equal(got, closurePaths) {
		t.Errorf("store paths\n%v\nwant\n%v", got, closurePaths)
	}
	var deps []string
	contains := 0
	for _, r := range doc.Relationships {
		switch r.Relationship {
		case "DEPENDS_ON":
			deps = append(deps, closure.Name(ids[string(r.RefA.ElementRefID)])+">"+closure.Name(ids[string(r.RefB.ElementRefID)]))
		case "CONTAINS":
			contains++
		}
	}
	slices.Sort(deps)
	want := "curl>glibc curl>openssl curl>zlib git>curl git>glibc git>openssl git>zlib openssl>glibc zlib>glibc"
	if strings.Join(deps, " ") != want {
		t.Errorf("DEPENDS_ON %s\nwant %s", strings.Join(deps, " "), want)
	}
	if contains != len(closurePaths) {
		t.Errorf("%d CONTAINS, want %d", contains, len(closurePaths))
	}

	again, err := newFixture(t, nil, nil, "").b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := again.SBOM(); !bytes.Equal(d2.Data, d.Data) {
		t.Error("the same image gives another SBOM")
	}
}

// TestReferrers: each manifest of an image has two referrers, the SPDX
// and the CycloneDX SBOM artifact manifests, whose subject it is; the
// artifact manifests are served by digest, and their blobs (the SBOMs,
// the empty config) are in the store. A restart keeps them; a damaged
// SBOM blob is rebuilt.
func TestReferrers(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, nil, dir)
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	sbom, _ := img.SBOM()
	cdx, ok := img.CycloneDX()
	if !ok || cdx.MediaType != MediaTypeCycloneDX {
		t.Fatalf("CycloneDX %v %v", cdx, ok)
	}
	check := func(b *Builder) {
		t.Helper()
		for _, m := range img.Manifests() {
			rs, err := b.Referrers(t.Context(), m.Digest)
			if err != nil || len(rs) != 2 {
				t.Fatalf("referrers of %s: %v %v", m.Digest, rs, err)
			}
			for i, doc := range []v1.Descriptor{sbom, cdx} {
				r := rs[i]
				if r.ArtifactType != string(doc.MediaType) || r.MediaType != MediaTypeOCIManifest || r.Annotations[ocispec.AnnotationCreated] != "1970-01-01T00:00:01Z" {
					t.Errorf("referrer %+v", r)
				}
				var am ocispec.Manifest
				if err := json.Unmarshal(r.Data, &am); err != nil {
					t.Fatal(err)
				}
				if am.ArtifactType != string(doc.MediaType) || am.Subject == nil || am.Subject.Digest.String() != m.Digest.String() ||
					am.Subject.MediaType != string(m.MediaType) || am.Subject.Size != m.Size ||
					am.Config.MediaType != MediaTypeOCIEmpty || am.Config.Digest != ocispec.DescriptorEmptyJSON.Digest ||
					len(am.Layers) != 1 || am.Layers[0].Digest.String() != doc.Digest.String() || am.Layers[0].MediaType != string(doc.MediaType) {
					t.Errorf("artifact manifest %s", r.Data)
				}
				got, err := b.Manifest(t.Context(), r.Digest)
				if err != nil || !bytes.Equal(got.Data, r.Data) {
					t.Errorf("artifact manifest by digest: %v", err)
				}
				for _, h := range []v1.Hash{r.Digest, doc.Digest, emptyDescriptor().Digest} {
					if err := serve(t, b, h); err != nil {
						t.Errorf("blob %s: %v", h, err)
					}
				}
			}
		}
	}
	check(f.b)
	for _, h := range []v1.Hash{img.configDescriptor().Digest, img.Layers()[0].Digest, {Algorithm: "sha256", Hex: strings.Repeat("0", 64)}} {
		if rs, err := f.b.Referrers(t.Context(), h); err != nil || len(rs) != 0 {
			t.Errorf("referrers of %s: %v %v, want none", h, rs, err)
		}
	}
	if _, err := f.b.Referrers(t.Context(), v1.Hash{Algorithm: "sha256", Hex: "x"}); err == nil {
		t.Error("an invalid digest has referrers")
	}

	// Damaged, then rebuilt.
	if err := serve(t, f.b, sbom.Digest); err != nil {
		t.Fatal(err)
	}
	damageFile(t, f.blobFile(sbom.Digest), "corrupt")
	if err := serve(t, f.b, sbom.Digest); !errors.Is(err, ErrDamaged) {
		t.Errorf("a damaged SBOM: %v", err)
	}
	if err := serve(t, f.b, sbom.Digest); err != nil {
		t.Errorf("the rebuilt SBOM: %v", err)
	}
	art := img.referrers[0].desc.Digest
	damageFile(t, f.blobFile(art), "delete")
	if err := serve(t, f.b, art); err != nil {
		t.Errorf("a deleted artifact manifest: %v", err)
	}

	// After a restart, from the record; a missing artifact manifest is
	// written again.
	f.b.Close()
	damageFile(t, f.blobFile(art), "delete")
	g := newFixture(t, f.nix, f.store, dir)
	check(g.b)
	if runs := g.nix.Runs.Load(); runs != 1 {
		t.Errorf("Nix ran %d times, want 1", runs)
	}
}

// TestAnnotations: both manifests carry the provenance annotations, fixed
// for the image, and the source's when the Nix knows it.
func TestAnnotations(t *testing.T) {
	f := newFixtureWith(t, nil, newStore(t), "", func(c *Config) {
		c.Nix = provenanceNix{c.Nix.(*fakenix.Nix)}
	})
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	var roots []string
	for _, n := range []string{"bashInteractive", "cacert", "coreutils", "curl", "iana-etc", "moreutils", "nano"} {
		roots = append(roots, fakenix.StorePath(n))
	}
	slices.Sort(roots)
	want := map[string]string{
		ocispec.AnnotationCreated:  "1970-01-01T00:00:01Z",
		ocispec.AnnotationTitle:    "bashInteractive/cacert/coreutils/curl/iana-etc/moreutils/nano",
		ocispec.AnnotationSource:   "https://example.com/pkgs.git",
		ocispec.AnnotationRevision: "rev-of-latest",
		AnnotationStorePaths:       strings.Join(roots, ","),
	}
	for _, m := range img.Manifests() {
		var got struct {
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if !equalMaps(got.Annotations, want) {
			t.Errorf("%s annotations %v\nwant %v", m.MediaType, got.Annotations, want)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// provenanceNix is the fake Nix with a source that knows its revision.
type provenanceNix struct{ *fakenix.Nix }

func (provenanceNix) Provenance(tag string) (string, string) {
	return "https://example.com/pkgs.git", "rev-of-" + tag
}

// TestReferrersSharedStore: a builder sharing the store and index with
// the one that built an image lists its referrers, after loading the
// other's records.
func TestReferrersSharedStore(t *testing.T) {
	dir := t.TempDir()
	a := newFixture(t, nil, nil, dir)
	b := newFixture(t, nil, a.store, dir)
	img, err := a.b.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range img.Manifests() {
		rs, err := b.b.Referrers(t.Context(), m.Digest)
		if err != nil || len(rs) != 2 || rs[0].Digest != img.Referrers(m.Digest)[0].Digest {
			t.Errorf("referrers of %s in the other process: %v %v", m.Digest, rs, err)
		}
	}
	if b.nix.Runs.Load() != 0 {
		t.Error("the other process ran Nix")
	}
}

// TestSBOMLostAtRestart: a record whose SBOM blob is gone when the index
// loads is dropped (the SBOM needs Nix's closure to be made again); the
// image is built again when asked for, with the same SBOM.
func TestSBOMLostAtRestart(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, nil, nil, dir)
	img, err := f.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	sbom, _ := img.SBOM()
	f.b.Close()
	damageFile(t, f.blobFile(sbom.Digest), "delete")
	g := newFixture(t, f.nix, f.store, dir)
	if !strings.Contains(g.logs.String(), "dropping damaged image record") {
		t.Errorf("log:\n%s", g.logs)
	}
	again, err := g.b.Image(t.Context(), "hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := again.SBOM(); !ok || d.Digest != sbom.Digest || g.nix.Runs.Load() != 2 {
		t.Errorf("rebuilt SBOM %s (Nix ran %d times), want %s", d.Digest, g.nix.Runs.Load(), sbom.Digest)
	}
	if err := serve(t, g.b, sbom.Digest); err != nil {
		t.Error(err)
	}
}

// TestCycloneDX: the CycloneDX document decodes with CycloneDX's Go
// library and has the SPDX document's facts: the image as the metadata's
// container, a component per store path with its purl and NAR hash, the
// references as dependencies; the same image gives the same bytes.
func TestCycloneDX(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	img, err := f.b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.CycloneDX()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(d.Data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != cdx.SpecVersion1_6 || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") ||
		bom.Metadata == nil || bom.Metadata.Timestamp != "1970-01-01T00:00:01Z" || bom.Metadata.Component == nil ||
		bom.Metadata.Component.Type != cdx.ComponentTypeContainer || bom.Metadata.Component.Name != "cacert/git/iana-etc" {
		t.Errorf("BOM header %s", d.Data[:min(len(d.Data), 400)])
	}
	if !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(bom.SerialNumber) {
		t.Errorf("serial number %s", bom.SerialNumber)
	}
	var got []string
	for _, c := range *bom.Components {
		got = append(got, c.BOMRef)
		name := closure.Name(c.BOMRef)
		want, _ := narHashHex(fakenix.NarHash(name))
		if c.Type != cdx.ComponentTypeLibrary || c.Name != name || c.PackageURL != "pkg:nix/"+name ||
			c.Hashes == nil || len(*c.Hashes) != 1 || (*c.Hashes)[0].Algorithm != cdx.HashAlgoSHA256 || (*c.Hashes)[0].Value != want {
			t.Errorf("component %+v", c)
		}
	}
	var paths []string
	for _, n := range []string{"cacert", "curl", "git", "glibc", "iana-etc", "openssl", "zlib"} {
		paths = append(paths, fakenix.StorePath(n))
	}
	slices.Sort(paths)
	if !slices.Equal(got, paths) {
		t.Errorf("components %v\nwant %v", got, paths)
	}
	var deps []string
	for _, dep := range *bom.Dependencies {
		for _, on := range *dep.Dependencies {
			deps = append(deps, closure.Name(dep.Ref)+">"+closure.Name(on))
		}
	}
	slices.Sort(deps)
	want := "curl>glibc curl>openssl curl>zlib git>curl git>glibc git>openssl git>zlib image>cacert image>git image>iana-etc openssl>glibc zlib>glibc"
	if strings.Join(deps, " ") != want {
		t.Errorf("dependencies %s\nwant %s", strings.Join(deps, " "), want)
	}
	again, err := newFixture(t, nil, nil, "").b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := again.CycloneDX(); !bytes.Equal(d2.Data, d.Data) {
		t.Error("the same image gives another CycloneDX document")
	}
}
