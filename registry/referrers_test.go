package registry

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// referrerImages is fakeImages with referrers: every manifest of "hello"
// has two, of different artifact types.
type referrerImages struct {
	*fakeImages
	refs map[v1.Hash][]v1.Descriptor
}

func (f referrerImages) Referrers(ctx context.Context, h v1.Hash) ([]v1.Descriptor, error) {
	return f.refs[h], nil
}

// TestReferrersWithoutCapability: an Images without referrers has no
// referrers route, and a sha256-<hex> tag is an ordinary tag.
func TestReferrersWithoutCapability(t *testing.T) {
	f, srv, _ := newTestServer(t)
	zero := "sha256:" + strings.Repeat("0", 64)
	r := do(t, srv, "GET", "/v2/hello/referrers/"+zero, nil)
	if code, _ := r.RegistryError(t); r.Status != 404 || code != "NOT_FOUND" {
		t.Errorf("%d %s", r.Status, r.Body)
	}
	before := f.calls.Load()
	r = do(t, srv, "GET", "/v2/hello/manifests/sha256-"+strings.Repeat("0", 64), nil)
	if r.Status != 404 || f.calls.Load() != before+1 {
		t.Errorf("the tag did not reach the images: %d %s", r.Status, r.Body)
	}
}

// TestReferrersFilter: the index lists every referrer, or those of the
// artifactType asked for, in the order the Images gives.
func TestReferrersFilter(t *testing.T) {
	f := newFakeImages()
	hello := f.images["hello"][0]
	a := desc("application/vnd.oci.image.manifest.v1+json", []byte(`{"a":1}`))
	a.ArtifactType = "application/spdx+json"
	a.Annotations = map[string]string{"z": "last", "a": "first \"quoted\" \x01 é"}
	b := desc("application/vnd.oci.image.manifest.v1+json", []byte(`{"b":1}`))
	b.ArtifactType = "application/vnd.in-toto+json"
	reg := New(referrerImages{f, map[v1.Hash][]v1.Descriptor{hello.Digest: {a, b}}})
	t.Cleanup(func() { reg.Close() })
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		query string
		want  []v1.Hash
	}{
		{"", []v1.Hash{a.Digest, b.Digest}},
		{"?artifactType=application%2Fspdx%2Bjson", []v1.Hash{a.Digest}},
		{"?artifactType=application%2Fvnd.in-toto%2Bjson", []v1.Hash{b.Digest}},
		{"?artifactType=x", nil},
	} {
		r := do(t, srv, "GET", "/v2/hello/referrers/"+hello.Digest.String()+c.query, nil)
		var idx v1.IndexManifest
		if err := json.Unmarshal(r.Body, &idx); err != nil || r.Status != 200 {
			t.Fatalf("%s: %d %s %v", c.query, r.Status, r.Body, err)
		}
		var got []v1.Hash
		for _, m := range idx.Manifests {
			got = append(got, m.Digest)
			want := a
			if m.Digest == b.Digest {
				want = b
			}
			if m.ArtifactType != want.ArtifactType || m.Size != want.Size || m.MediaType != want.MediaType || len(m.Data) != 0 ||
				len(m.Annotations) != len(want.Annotations) || m.Annotations["a"] != want.Annotations["a"] {
				t.Errorf("%s: descriptor %+v, want %+v", c.query, m, want)
			}
		}
		if len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] {
			t.Errorf("%s: %v, want %v", c.query, got, c.want)
		}
		if filtered := r.Header.Get("OCI-Filters-Applied"); (filtered == "artifactType") != (c.query != "") {
			t.Errorf("%s: OCI-Filters-Applied %q", c.query, filtered)
		}
	}
	r := do(t, srv, "GET", "/v2/hello/manifests/sha256-"+hello.Digest.Hex, nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != mediaTypeIndex {
		t.Errorf("tag schema: %d %v", r.Status, r.Header)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `"\`, "\x00\x1f\n", "é€😀", "\xff\xfe"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%q: %s: %v", s, b, err)
		} else if want := string([]rune(s)); back != want {
			t.Errorf("%q: %s reads back as %q", s, b, back)
		}
	}
}
