package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestModel(t *testing.T) {
	d := func(name string, size int64) v1.Descriptor { return v1.Descriptor{Digest: digestOf(name), Size: size} }
	A, B, C, D := d("a", 1000), d("b", 200), d("c", 30), d("d", 4)
	images := []Image{
		{Manifest: v1.Manifest{Layers: []v1.Descriptor{A, B, C}}},
		{Manifest: v1.Manifest{Layers: []v1.Descriptor{A, B, D}}},
		{Manifest: v1.Manifest{Layers: []v1.Descriptor{A, D}}},
		{Manifest: v1.Manifest{Layers: []v1.Descriptor{B, A}}},
	}
	model(images)
	var got []string
	for _, img := range images {
		got = append(got, fmt.Sprintf("%d/%d", img.PerBlobBytes, img.ChainBytes))
	}
	// The package doc's example, plus an image with known layers in a
	// new order: Docker downloads both again.
	if want := "1230/1230 4/4 0/4 0/1200"; strings.Join(got, " ") != want {
		t.Errorf("per-blob/chain bytes = %s, want %s", strings.Join(got, " "), want)
	}
}

func TestAgree(t *testing.T) {
	for _, c := range []struct {
		measured, simulated int64
		ok                  bool
	}{
		{1000, 1000, true}, {1020, 1000, true}, {980, 1000, true},
		{1021, 1000, false}, {979, 1000, false}, {5, 0, false},
	} {
		err := Agree(c.measured, c.simulated, 0.02)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrDisagree) {
			t.Errorf("Agree(%d, %d) = %v", c.measured, c.simulated, err)
		}
	}
}

func TestImageName(t *testing.T) {
	if got, want := ImageName([]string{"shell", "libstdcPP6", "gir1_2-glib-2_0"}), "shell/libstdcpp6/gir1_2-glib-2_0"; got != want {
		t.Errorf("ImageName = %q, want %q", got, want)
	}
}

// TestProxyAccount runs the counting proxy in front of a fake registry and
// checks the accounting of a pull's requests.
func TestProxyAccount(t *testing.T) {
	layer := strings.Repeat("L", 5000)
	config := `{"rootfs":{}}`
	layerD, configD := digestOf(layer), digestOf(config)
	manifest := fmt.Sprintf(`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":%q,"size":12},"layers":[{"digest":%q,"size":5000}]}`, configD, layerD)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/latest"):
			io.WriteString(w, manifest)
		case strings.HasSuffix(r.URL.Path, "/blobs/"+layerD.String()):
			if r.Method == http.MethodHead {
				w.Header().Set("Content-Length", "5000")
				return
			}
			io.WriteString(w, layer)
		case strings.HasSuffix(r.URL.Path, "/blobs/"+configD.String()):
			io.WriteString(w, config)
		default:
			http.NotFound(w, r)
		}
	}))
	defer backend.Close()
	px, err := newProxy(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer px.close()
	mark := px.mark()
	for _, req := range []struct{ method, path string }{
		{"GET", "/v2/x/manifests/latest"}, {"HEAD", "/v2/x/blobs/" + layerD.String()},
		{"GET", "/v2/x/blobs/" + configD.String()}, {"GET", "/v2/x/blobs/" + layerD.String()},
	} {
		r, _ := http.NewRequestWithContext(context.Background(), req.method, "http://"+px.addr()+req.path, nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	img := Image{Requests: px.since(mark)}
	if len(img.Requests) != 4 {
		t.Fatalf("proxy recorded %d requests", len(img.Requests))
	}
	if err := img.account(); err != nil {
		t.Fatal(err)
	}
	if img.LayerBytes != 5000 || img.ConfigBytes != int64(len(config)) || img.ManifestBytes != int64(len(manifest)) || img.LayersFetched != 1 {
		t.Errorf("accounted %+v", img)
	}
	if img.Manifest.Config.Digest != configD || len(img.Manifest.Layers) != 1 || img.Manifest.Layers[0].Digest != layerD {
		t.Errorf("manifest %+v", img.Manifest)
	}

	// A failed blob GET is an error, not bytes.
	bad := Image{Requests: []Request{
		{Method: "GET", Path: "/v2/x/manifests/latest", Status: 200, Body: []byte(manifest), Bytes: 10},
		{Method: "GET", Path: "/v2/x/blobs/" + layerD.String(), Status: 404, Bytes: 10},
	}}
	if err := bad.account(); err == nil {
		t.Error("account accepted a 404 blob")
	}
	if err := (&Image{}).account(); err == nil {
		t.Error("account accepted a pull without a manifest")
	}
}

func TestStorePathLayerBytes(t *testing.T) {
	a, custom := digestOf("a"), digestOf("custom")
	m := v1.Manifest{Layers: []v1.Descriptor{{Digest: a, Size: 100}, {Digest: custom, Size: 7}}}
	res := &Result{Images: []Image{{
		Manifest:   m,
		LayerBytes: 107,
		Requests: []Request{
			{Method: "GET", Path: "/v2/x/blobs/" + a.String(), Bytes: 100},
			{Method: "HEAD", Path: "/v2/x/blobs/" + custom.String()},
			{Method: "GET", Path: "/v2/x/blobs/" + custom.String(), Bytes: 7},
		},
	}}}
	if got := res.StorePathLayerBytes(); got != 100 {
		t.Errorf("StorePathLayerBytes = %d, want 100", got)
	}
}

// digestOf is the sha256 digest of s.
func digestOf(s string) v1.Hash {
	h, _, err := v1.SHA256(strings.NewReader(s))
	if err != nil {
		panic(err)
	}
	return h
}
