package testutil

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// MediaTypeDockerManifest is what a Puller asks a manifest to be.
const MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"

// A Puller pulls images over the registry API as a client that retries
// server errors would, and checks every body it gets against its digest:
// a blob's must hash to the digest in its path and its
// Docker-Content-Digest, a manifest's to its Docker-Content-Digest (and to
// the digest in the path, when asked for by digest). Its counters are safe
// for concurrent use.
type Puller struct {
	// Client sends the requests; Base is the registry's URL,
	// http://host:port.
	Client *http.Client
	Base   string
	// ManifestTries and BlobTries are how often a request that gets a
	// 5xx is made, a moment apart; 0 means 3 and 5.
	ManifestTries, BlobTries int
	// Wrong, when set, hears of every body that did not match.
	Wrong func(path string, got, want string)

	checked, wrong atomic.Int64
}

// Checked is how many bodies the Puller checked, and WrongBodies how many
// of them did not match their digests.
func (p *Puller) Checked() int64     { return p.checked.Load() }
func (p *Puller) WrongBodies() int64 { return p.wrong.Load() }

// Get sends GET path, asking for accept, and checks a 200's body.
func (p *Puller) Get(ctx context.Context, path, accept string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, body, nil
	}
	got := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	want := resp.Header.Get("Docker-Content-Digest")
	if i := strings.LastIndex(path, "/"); strings.HasPrefix(path[i+1:], "sha256:") && path[i+1:] != want {
		want = path[i+1:] + " (the path) and " + want + " (the header)"
	}
	p.checked.Add(1)
	if got != want {
		p.wrong.Add(1)
		if p.Wrong != nil {
			p.Wrong(path, got, want)
		}
	}
	return resp.StatusCode, body, nil
}

// retry makes a GET up to tries times while it gets a 5xx.
func (p *Puller) retry(ctx context.Context, tries int, path, accept string) ([]byte, error) {
	var status int
	var body []byte
	var err error
	for attempt := 1; attempt <= tries; attempt++ {
		if status, body, err = p.Get(ctx, path, accept); err != nil {
			return nil, err
		}
		if status < 500 {
			break
		}
		select {
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %.300s", path, status, body)
	}
	return body, nil
}

// Blob gets the blob digest of repository name.
func (p *Puller) Blob(ctx context.Context, name, digest string) error {
	_, err := p.retry(ctx, cmpOr(p.BlobTries, 5), "/v2/"+name+"/blobs/"+digest, "")
	return err
}

// Pull gets the Docker manifest of name:latest, then its config and every
// layer.
func (p *Puller) Pull(ctx context.Context, name string) (*v1.Manifest, error) {
	body, err := p.retry(ctx, cmpOr(p.ManifestTries, 3), "/v2/"+name+"/manifests/latest", MediaTypeDockerManifest)
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", name, err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if err := p.Blob(ctx, name, d.Digest.String()); err != nil {
			return &m, fmt.Errorf("%s: %w", name, err)
		}
	}
	return &m, nil
}

func cmpOr(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// DirBytes returns the bytes of the regular files below dir: their
// apparent size (as du -sb counts) and the disk blocks they use (as du
// counts without -b, in bytes). Files that vanish during the walk are
// left out.
func DirBytes(dir string) (apparent, disk int64) {
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		apparent += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			disk += st.Blocks * 512
		}
		return nil
	})
	return apparent, disk
}
