package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

// urlImages is a fakeImages whose blobs live at URLs (BlobURLs), as an
// object store's do; blobs reached through Blob are counted.
type urlImages struct {
	*fakeImages
	base     string // "" answers from metadata without a URL
	blobURLs int
}

func (u *urlImages) BlobURL(ctx context.Context, h v1.Hash) (string, int64, bool, error) {
	u.blobURLs++
	b, ok := u.blobs[h]
	if !ok {
		return "", 0, true, fmt.Errorf("fake: %w: %s", layers.ErrBlobUnknown, h)
	}
	if u.base == "" {
		return "", int64(len(b)), true, nil
	}
	return u.base + "/" + h.Hex + "?X-Amz-Signature=abc", int64(len(b)), true, nil
}

// TestBlobRedirect: with BlobURLs, a GET is a 307 to the URL and a HEAD
// is answered from the size; neither opens the blob. Without a URL, GET
// serves the bytes with Range, HEAD still only asks for the size.
func TestBlobRedirect(t *testing.T) {
	f := newFakeImages()
	var h v1.Hash
	var data []byte
	for d, b := range f.blobs {
		if len(b) == 1000 {
			h, data = d, b
		}
	}
	u := &urlImages{fakeImages: f, base: "http://store.example/bucket"}
	reg := New(u)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	defer reg.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	get := func(method, path string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	path := "/v2/hello/blobs/" + h.String()
	resp, _ := get("GET", path, nil)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != u.base+"/"+h.Hex+"?X-Amz-Signature=abc" ||
		resp.Header.Get("Docker-Content-Digest") != h.String() || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET: %s %v", resp.Status, resp.Header)
	}
	resp, body := get("HEAD", path, nil)
	if resp.StatusCode != 200 || resp.ContentLength != 1000 || len(body) != 0 || resp.Header.Get("Docker-Content-Digest") != h.String() {
		t.Errorf("HEAD: %s %d %v", resp.Status, resp.ContentLength, resp.Header)
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("Blob was called %d times; redirects and HEADs need only the metadata", n)
	}
	missing := "/v2/hello/blobs/sha256:" + strings.Repeat("0", 64)
	if resp, body := get("GET", missing, nil); resp.StatusCode != 404 || !strings.Contains(string(body), "BLOB_UNKNOWN") {
		t.Errorf("GET of a missing blob: %s %s", resp.Status, body)
	}

	// Proxied: the bytes, with Range, through Blob.
	u.base = ""
	resp, body = get("GET", path, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(data[10:20]) {
		t.Errorf("proxied GET with Range: %s %q", resp.Status, body)
	}
	resp, _ = get("HEAD", path, nil)
	if resp.StatusCode != 200 || resp.ContentLength != 1000 || f.calls.Load() != 1 {
		t.Errorf("proxied HEAD: %s %d, %d opens", resp.Status, resp.ContentLength, f.calls.Load())
	}
}
