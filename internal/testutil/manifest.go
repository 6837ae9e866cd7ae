package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A Manifest is an image manifest as a registry served it: parsed with
// go-containerregistry's types, which read Docker schema 2 and OCI image
// manifests alike, next to the bytes and the response headers.
type Manifest struct {
	v1.Manifest
	Raw    []byte      // the response body, byte for byte
	Digest v1.Hash     // the sha256 of Raw
	Header http.Header // the response headers, Content-Type and Docker-Content-Digest among them
}

// GetManifest fetches a manifest, url being http://host/v2/<name>/manifests/<reference>,
// asking for the media type accept, and parses it. An answer other than
// 200 OK is an error that holds the status and the start of the body; a
// body that is not a manifest is an error too. It checks nothing else:
// what the headers must say is the caller's to assert.
func GetManifest(ctx context.Context, client *http.Client, url, accept string) (*Manifest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %.500s", url, resp.StatusCode, body)
	}
	m, err := v1.ParseManifest(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return &Manifest{Manifest: *m, Raw: body, Digest: h, Header: resp.Header}, nil
}

// LayerDigests returns the digests of the manifest's layers, in order.
func (m *Manifest) LayerDigests() []string {
	ds := make([]string, len(m.Layers))
	for i, l := range m.Layers {
		ds[i] = l.Digest.String()
	}
	return ds
}

// LayerBytes is the sum of the sizes of the manifest's layers.
func (m *Manifest) LayerBytes() int64 {
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}
