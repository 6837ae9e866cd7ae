package images

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestHTTPReferrers: through the registry, each manifest's referrers are
// its SBOM artifacts (SPDX, CycloneDX), as an OCI index that go-containerregistry reads;
// artifactType filters (and says so); an unknown digest has an empty
// index, an invalid one is DIGEST_INVALID; the tag schema's sha256-<hex>
// tag answers the same index, and a digest without referrers has no such
// tag. The artifact manifest and its blobs are pulled like any other.
func TestHTTPReferrers(t *testing.T) {
	f, srv := serveFixture(t, nil)
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	sbom, _ := img.SBOM()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, m := range img.Manifests() {
		path := "/v2/shell/curl/referrers/" + m.Digest.String()
		r := do(t, srv, "GET", path, nil)
		if r.Status != 200 || r.Header.Get("Content-Type") != MediaTypeOCIIndex || r.Header.Get("OCI-Filters-Applied") != "" {
			t.Fatalf("%s: %d %v %s", path, r.Status, r.Header, r.Body)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(r.Body, &idx); err != nil {
			t.Fatal(err)
		}
		all := img.Referrers(m.Digest)
		want := all[0]
		if idx.SchemaVersion != 2 || idx.MediaType != MediaTypeOCIIndex || len(idx.Manifests) != 2 {
			t.Fatalf("index %s", r.Body)
		}
		for i, at := range []string{MediaTypeSPDX, MediaTypeCycloneDX} {
			if got := idx.Manifests[i]; got.Digest.String() != all[i].Digest.String() || got.Size != all[i].Size ||
				got.ArtifactType != at || got.MediaType != MediaTypeOCIManifest ||
				got.Annotations[ocispec.AnnotationCreated] != "1970-01-01T00:00:01Z" {
				t.Errorf("index entry %d: %+v", i, got)
			}
		}
		if h := do(t, srv, "HEAD", path, nil); h.Status != 200 || len(h.Body) != 0 || h.Header.Get("Content-Length") != r.Header.Get("Content-Length") {
			t.Errorf("HEAD: %d %v", h.Status, h.Header)
		}
		filtered := do(t, srv, "GET", path+"?artifactType="+url.QueryEscape(MediaTypeSPDX), nil)
		var fidx ocispec.Index
		if err := json.Unmarshal(filtered.Body, &fidx); err != nil || filtered.Status != 200 || filtered.Header.Get("OCI-Filters-Applied") != "artifactType" ||
			len(fidx.Manifests) != 1 || fidx.Manifests[0].Digest.String() != want.Digest.String() {
			t.Errorf("filtered: %d %v %s", filtered.Status, filtered.Header, filtered.Body)
		}
		other := do(t, srv, "GET", path+"?artifactType=application/vnd.example", nil)
		if other.Status != 200 || other.Header.Get("OCI-Filters-Applied") != "artifactType" ||
			string(other.Body) != `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` {
			t.Errorf("filtered out: %d %v %s", other.Status, other.Header, other.Body)
		}
		tag := do(t, srv, "GET", "/v2/shell/curl/manifests/sha256-"+m.Digest.Hex, nil)
		if tag.Status != 200 || tag.Header.Get("Content-Type") != MediaTypeOCIIndex || string(tag.Body) != string(r.Body) ||
			tag.Header.Get("Docker-Content-Digest") != sha(tag.Body) {
			t.Errorf("referrers tag: %d %v %s", tag.Status, tag.Header, tag.Body)
		}

		// go-containerregistry's client reads the index and pulls the artifact.
		ref, err := name.NewDigest(host+"/shell/curl@"+m.Digest.String(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		ri, err := remote.Referrers(ref)
		if err != nil {
			t.Fatal(err)
		}
		im, err := ri.IndexManifest()
		if err != nil || len(im.Manifests) != 2 || im.Manifests[0].Digest != want.Digest {
			t.Fatalf("remote.Referrers: %v %v", im, err)
		}
		art, err := remote.Image(ref.Context().Digest(want.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		ls, err := art.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("artifact layers %v %v", ls, err)
		}
		if h, _ := ls[0].Digest(); h != sbom.Digest {
			t.Errorf("artifact layer %s, want the SBOM %s", h, sbom.Digest)
		}
		rc, err := ls[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		checkBody(t, rc, sbom.Digest)
	}
	zero := "sha256:" + strings.Repeat("0", 64)
	if r := do(t, srv, "GET", "/v2/shell/curl/referrers/"+zero, nil); r.Status != 200 ||
		string(r.Body) != `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` {
		t.Errorf("unknown digest: %d %s", r.Status, r.Body)
	}
	if r := do(t, srv, "GET", "/v2/shell/curl/manifests/sha256-"+strings.Repeat("0", 64), nil); r.Status != 404 {
		t.Errorf("referrers tag of an unknown digest: %d %s", r.Status, r.Body)
	} else if code, _ := r.RegistryError(t); code != "MANIFEST_UNKNOWN" {
		t.Errorf("code %s", code)
	}
	for _, bad := range []string{"sha256:abc", "md5:" + strings.Repeat("0", 32), "sha256:" + strings.Repeat("A", 64), "latest"} {
		r := do(t, srv, "GET", "/v2/shell/curl/referrers/"+bad, nil)
		if code, _ := r.RegistryError(t); r.Status != 400 || code != "DIGEST_INVALID" {
			t.Errorf("%s: %d %s", bad, r.Status, r.Body)
		}
	}
	if r := do(t, srv, "DELETE", "/v2/shell/curl/referrers/"+zero, nil); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", r.Status)
	}
	if r := do(t, srv, "GET", "/v2/sh;ell/referrers/"+zero, nil); r.Status != 400 {
		t.Errorf("bad name: %d", r.Status)
	}
}
