package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
)

// orasReferrers is what `oras discover --format json` prints.
type orasReferrers struct {
	Digest    string `json:"digest"`
	Referrers []struct {
		Digest       string            `json:"digest"`
		MediaType    string            `json:"mediaType"`
		ArtifactType string            `json:"artifactType"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"referrers"`
}

// testORAS: oras discovers the SPDX SBOM of each of shell/curl's
// manifests, through the referrers API and through the tag schema, and
// pulls it (and the CycloneDX one, which must name the same paths); the
// document parses and validates with the SPDX tools and names every store
// path of the image's real closure (nix-store -qR of the top-level store
// paths the manifest's annotation lists) exactly once, each with the NAR
// hash Nix records for it.
func testORAS(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	const spdxType, cdxType = "application/spdx+json", "application/vnd.cyclonedx+json"
	var sbomDigest string
	var cdxPaths []string
	for _, media := range []string{mediaDockerManifest, mediaOCIManifest} {
		m := srv.manifest(ctx, t, imageCurl, "latest", media)
		ref := srv.Ref(imageCurl) + "@" + m.Digest.String()
		var found []string
		for _, spec := range []string{"v1.1-referrers-api", "v1.1-referrers-tag"} {
			out := mustRun(ctx, t, "oras", "discover", "--plain-http", "--distribution-spec", spec, "--format", "json", "--artifact-type", spdxType, ref)
			var d orasReferrers
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatalf("oras discover: %v\n%s", err, out)
			}
			if d.Digest != m.Digest.String() || len(d.Referrers) != 1 || d.Referrers[0].ArtifactType != spdxType ||
				d.Referrers[0].Annotations["org.opencontainers.image.created"] != "1970-01-01T00:00:01Z" {
				t.Fatalf("oras discover (%s) of %s: %s", spec, ref, out)
			}
			found = append(found, d.Referrers[0].Digest)
		}
		if found[0] != found[1] {
			t.Errorf("the referrers API and the tag schema disagree: %v", found)
		}
		// Unfiltered, the CycloneDX document is there too; it decodes
		// with CycloneDX's library and names the same store paths.
		var all orasReferrers
		out := mustRun(ctx, t, "oras", "discover", "--plain-http", "--format", "json", ref)
		if err := json.Unmarshal([]byte(out), &all); err != nil || len(all.Referrers) != 2 || all.Referrers[1].ArtifactType != cdxType {
			t.Fatalf("oras discover of %s: %v\n%s", ref, err, out)
		}
		cdxDir := t.TempDir()
		mustRun(ctx, t, "oras", "pull", "--plain-http", "-o", cdxDir, srv.Ref(imageCurl)+"@"+all.Referrers[1].Digest)
		cdxBody, err := os.ReadFile(filepath.Join(cdxDir, "sbom.cdx.json"))
		if err != nil {
			t.Fatal(err)
		}
		var bom cdx.BOM
		if err := cdx.NewBOMDecoder(bytes.NewReader(cdxBody), cdx.BOMFileFormatJSON).Decode(&bom); err != nil || bom.Components == nil {
			t.Fatalf("CycloneDX: %v", err)
		}
		cdxPaths = nil
		for _, c := range *bom.Components {
			cdxPaths = append(cdxPaths, c.BOMRef)
		}
		dir := t.TempDir()
		mustRun(ctx, t, "oras", "pull", "--plain-http", "-o", dir, srv.Ref(imageCurl)+"@"+found[0])
		body, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
		if err != nil {
			t.Fatal(err)
		}
		if sbomDigest == "" {
			sbomDigest = sha256Digest(body)
			closure := checkSBOM(ctx, t, m.Raw, body)
			slices.Sort(cdxPaths)
			if !slices.Equal(cdxPaths, closure) {
				t.Errorf("the CycloneDX document lists %d store paths, the closure has %d", len(cdxPaths), len(closure))
			}
		} else if sha256Digest(body) != sbomDigest {
			t.Errorf("the two manifests have different SBOMs")
		}
	}
}

// checkSBOM checks an SBOM against the real closure of the image whose
// manifest is raw, and returns the closure.
func checkSBOM(ctx context.Context, t *testing.T, raw, body []byte) []string {
	t.Helper()
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	roots := strings.Split(m.Annotations["dev.nixery.store-paths"], ",")
	if len(roots) < 2 || m.Annotations["org.opencontainers.image.title"] != "bashInteractive/cacert/coreutils/curl/iana-etc/moreutils/nano" {
		t.Fatalf("manifest annotations %v", m.Annotations)
	}
	closure := strings.Fields(mustRun(ctx, t, append([]string{"nix-store", "--query", "--requisites"}, roots...)...))
	slices.Sort(closure)
	var info []struct {
		Path    string `json:"path"`
		NarHash string `json:"narHash"`
	}
	out := mustRun(ctx, t, append([]string{"nix", "--extra-experimental-features", "nix-command", "path-info", "--json"}, closure...)...)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("nix path-info: %v\n%s", err, out)
	}
	narHex := map[string]string{}
	for _, p := range info {
		sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p.NarHash, "sha256-"))
		if err != nil {
			t.Fatalf("nix path-info: NAR hash %q", p.NarHash)
		}
		narHex[p.Path] = hex.EncodeToString(sum)
	}

	doc, err := spdxjson.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("SPDX tools: %v", err)
	}
	count := map[string]int{}
	for _, p := range doc.Packages {
		if p.PackageFileName == "" {
			continue // the image itself
		}
		count[p.PackageFileName]++
		if len(p.PackageChecksums) != 1 || p.PackageChecksums[0].Value != narHex[p.PackageFileName] {
			t.Errorf("%s: checksums %v, NAR hash %s", p.PackageFileName, p.PackageChecksums, narHex[p.PackageFileName])
		}
		if len(p.PackageExternalReferences) != 1 || !strings.HasPrefix(p.PackageExternalReferences[0].Locator, "pkg:nix/"+p.PackageName) {
			t.Errorf("%s: external refs %v", p.PackageFileName, p.PackageExternalReferences)
		}
	}
	var listed []string
	for p, n := range count {
		if n != 1 {
			t.Errorf("%s is listed %d times", p, n)
		}
		listed = append(listed, p)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, closure) {
		t.Errorf("the SBOM lists %d store paths:\n%s\nthe closure has %d:\n%s", len(listed), strings.Join(listed, "\n"), len(closure), strings.Join(closure, "\n"))
	}
	deps := 0
	for _, r := range doc.Relationships {
		if r.Relationship == "DEPENDS_ON" {
			deps++
		}
	}
	if deps == 0 {
		t.Error("no DEPENDS_ON relationships")
	}
	t.Logf("SBOM: %d store paths, %d DEPENDS_ON, %d bytes", len(listed), deps, len(body))
	return closure
}
