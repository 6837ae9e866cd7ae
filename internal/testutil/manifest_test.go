package testutil_test

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nixery-go/nixery/internal/testutil"
)

func TestGetManifest(t *testing.T) {
	img := threeLayers(t)
	raw, _ := img.RawManifest()
	digest, _ := img.Digest()
	want, _ := img.Manifest()
	var accepted string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/x/manifests/latest":
			accepted = r.Header.Get("Accept")
			w.Header().Set("Content-Type", string(want.MediaType))
			w.Write(raw)
		case "/v2/x/manifests/garbage":
			w.Write([]byte("{not json"))
		default:
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
		}
	}))
	defer srv.Close()

	m, err := testutil.GetManifest(t.Context(), srv.Client(), srv.URL+"/v2/x/manifests/latest", "application/vnd.oci.image.manifest.v1+json")
	if err != nil {
		t.Fatal(err)
	}
	if accepted != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("Accept sent: %q", accepted)
	}
	if m.Digest != digest || string(m.Raw) != string(raw) || m.Header.Get("Content-Type") != string(want.MediaType) {
		t.Errorf("digest %s (want %s), %d raw bytes, Content-Type %q", m.Digest, digest, len(m.Raw), m.Header.Get("Content-Type"))
	}
	if len(m.Layers) != 3 || m.Config.Digest != want.Config.Digest {
		t.Errorf("parsed %+v, want %+v", m.Manifest, want)
	}
	var size int64
	for i, l := range want.Layers {
		size += l.Size
		if m.LayerDigests()[i] != l.Digest.String() {
			t.Errorf("LayerDigests()[%d] = %s, want %s", i, m.LayerDigests()[i], l.Digest)
		}
	}
	if m.LayerBytes() != size {
		t.Errorf("LayerBytes = %d, want %d", m.LayerBytes(), size)
	}

	if _, err := testutil.GetManifest(t.Context(), srv.Client(), srv.URL+"/v2/x/manifests/missing", ""); err == nil ||
		!strings.Contains(err.Error(), "status 404") || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
		t.Errorf("404: %v", err)
	}
	if _, err := testutil.GetManifest(t.Context(), srv.Client(), srv.URL+"/v2/x/manifests/garbage", ""); err == nil {
		t.Error("a body that is not JSON was accepted")
	}
}

// threeLayers is an OCI image of three small layers.
func threeLayers(t *testing.T) v1.Image {
	var ls []v1.Layer
	for i := range 3 {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		body := strings.Repeat("x", 100*(i+1))
		tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o444, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
		tw.Close()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.Bytes())), nil })
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
