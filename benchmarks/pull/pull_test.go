package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
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
			w.Header().Set("Docker-Content-Digest", digestOf(manifest).String())
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
	if err := img.account(nil); err != nil {
		t.Fatal(err)
	}
	if img.LayerBytes != 5000 || img.ConfigBytes != int64(len(config)) || img.ManifestBytes != int64(len(manifest)) || img.LayersFetched != 1 {
		t.Errorf("accounted %+v", img)
	}
	if got := img.Requests[0].ContentDigest; got != digestOf(manifest).String() {
		t.Errorf("Docker-Content-Digest recorded %q", got)
	}
	if string(px.manifest(digestOf(manifest).String())) != manifest {
		t.Error("the proxy did not keep the manifest served by its digest")
	}
	if img.Manifest.Config.Digest != configD || len(img.Manifest.Layers) != 1 || img.Manifest.Layers[0].Digest != layerD {
		t.Errorf("manifest %+v", img.Manifest)
	}

	// A failed blob GET is an error, not bytes.
	bad := Image{Requests: []Request{
		{Method: "GET", Path: "/v2/x/manifests/latest", Status: 200, Body: []byte(manifest), Bytes: 10},
		{Method: "GET", Path: "/v2/x/blobs/" + layerD.String(), Status: 404, Bytes: 10},
	}}
	if err := bad.account(nil); err == nil {
		t.Error("account accepted a 404 blob")
	}
	if err := (&Image{}).account(nil); err == nil {
		t.Error("account accepted a pull without a manifest")
	}
}

// TestAccountCachedManifest: a Docker engine that holds the image's
// manifest already sends only a HEAD for the tag, or fetches the index
// and takes the platform's manifest from its own store; the manifest is
// found by digest, through what the proxy served before or from the
// server.
func TestAccountCachedManifest(t *testing.T) {
	layer := digestOf("layer")
	config := digestOf("config")
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":6},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":5}]}`, config, layer)
	mDigest := digestOf(manifest)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"platform":{"os":"linux","architecture":%q}}]}`,
		digestOf("other"), 10, mDigest, len(manifest), runtime.GOARCH)
	iDigest := digestOf(index)
	bodies := map[string]string{mDigest.String(): manifest, iDigest.String(): index, "latest": index}
	var asked []string
	resolve := func(ref string) ([]byte, error) {
		asked = append(asked, ref)
		if b, ok := bodies[ref]; ok {
			return []byte(b), nil
		}
		return nil, fmt.Errorf("unknown %s", ref)
	}
	for _, c := range []struct {
		name string
		reqs []Request
		want string // first reference resolved
	}{
		{"HEAD of the tag", []Request{{Method: "HEAD", Path: "/v2/x/manifests/latest", Status: 200, ContentDigest: mDigest.String()}}, mDigest.String()},
		{"HEAD answered with the index", []Request{{Method: "HEAD", Path: "/v2/x/manifests/latest", Status: 200, ContentDigest: iDigest.String()}}, iDigest.String()},
		{"index GET, manifest from the engine's store", []Request{{Method: "GET", Path: "/v2/x/manifests/latest", Status: 200, Body: []byte(index), ContentDigest: iDigest.String()}}, iDigest.String()},
		{"HEAD by digest without the header", []Request{{Method: "HEAD", Path: "/v2/x/manifests/" + mDigest.String(), Status: 200}}, mDigest.String()},
		{"no manifest request", nil, "latest"},
	} {
		asked = nil
		img := Image{Requests: append(c.reqs, Request{Method: "GET", Path: "/v2/x/blobs/" + layer.String(), Status: 200, Bytes: 5})}
		if err := img.account(resolve); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if img.ManifestDigest != mDigest.String() || len(img.Manifest.Layers) != 1 || img.LayerBytes != 5 || img.LayersFetched != 1 {
			t.Errorf("%s: manifest %s, %d layers, %d layer bytes", c.name, img.ManifestDigest, len(img.Manifest.Layers), img.LayerBytes)
		}
		if len(asked) == 0 || asked[0] != c.want {
			t.Errorf("%s: resolved %v, want %s first", c.name, asked, c.want)
		}
	}
	// An index without the engine's platform is an error.
	bodies[iDigest.String()] = strings.ReplaceAll(index, runtime.GOARCH, "s390x-none")
	img := Image{Requests: []Request{{Method: "HEAD", Path: "/v2/x/manifests/latest", Status: 200, ContentDigest: iDigest.String()}}}
	if err := img.account(resolve); err == nil {
		t.Error("account accepted an index without the platform")
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
