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
)

func TestModel(t *testing.T) {
	d := func(name string, size int64) Descriptor { return Descriptor{Digest: "sha256:" + name, Size: size} }
	A, B, C, D := d("a", 1000), d("b", 200), d("c", 30), d("d", 4)
	images := []Image{
		{Manifest: Manifest{Layers: []Descriptor{A, B, C}}},
		{Manifest: Manifest{Layers: []Descriptor{A, B, D}}},
		{Manifest: Manifest{Layers: []Descriptor{A, D}}},
		{Manifest: Manifest{Layers: []Descriptor{B, A}}},
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
	manifest := `{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:c","size":12},"layers":[{"digest":"sha256:l","size":5000}]}`
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/latest"):
			io.WriteString(w, manifest)
		case strings.HasSuffix(r.URL.Path, "/blobs/sha256:l"):
			if r.Method == http.MethodHead {
				w.Header().Set("Content-Length", "5000")
				return
			}
			io.WriteString(w, layer)
		case strings.HasSuffix(r.URL.Path, "/blobs/sha256:c"):
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
		{"GET", "/v2/x/manifests/latest"}, {"HEAD", "/v2/x/blobs/sha256:l"},
		{"GET", "/v2/x/blobs/sha256:c"}, {"GET", "/v2/x/blobs/sha256:l"},
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
	if img.Manifest.Config.Digest != "sha256:c" || len(img.Manifest.Layers) != 1 {
		t.Errorf("manifest %+v", img.Manifest)
	}

	// A failed blob GET is an error, not bytes.
	bad := Image{Requests: []Request{
		{Method: "GET", Path: "/v2/x/manifests/latest", Status: 200, Body: []byte(manifest), Bytes: 10},
		{Method: "GET", Path: "/v2/x/blobs/sha256:l", Status: 404, Bytes: 10},
	}}
	if err := bad.account(); err == nil {
		t.Error("account accepted a 404 blob")
	}
	if err := (&Image{}).account(); err == nil {
		t.Error("account accepted a pull without a manifest")
	}
}

func TestStorePathLayerBytes(t *testing.T) {
	m := Manifest{Layers: []Descriptor{{"sha256:a", 100}, {"sha256:custom", 7}}}
	res := &Result{Images: []Image{{
		Manifest:   m,
		LayerBytes: 107,
		Requests: []Request{
			{Method: "GET", Path: "/v2/x/blobs/sha256:a", Bytes: 100},
			{Method: "HEAD", Path: "/v2/x/blobs/sha256:custom"},
			{Method: "GET", Path: "/v2/x/blobs/sha256:custom", Bytes: 7},
		},
	}}}
	if got := res.StorePathLayerBytes(); got != 100 {
		t.Errorf("StorePathLayerBytes = %d, want 100", got)
	}
}
