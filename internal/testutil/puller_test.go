package testutil

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestPuller: the Puller checks every body against its digest, retries
// 5xx answers and gives up on others.
func TestPuller(t *testing.T) {
	layer := []byte("layer bytes")
	config := []byte(`{"config":{}}`)
	ld := fmt.Sprintf("sha256:%x", sha256.Sum256(layer))
	cd := fmt.Sprintf("sha256:%x", sha256.Sum256(config))
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q,"size":%d},"layers":[{"digest":%q,"size":%d}]}`,
		MediaTypeDockerManifest, cd, len(config), ld, len(layer)))
	md := fmt.Sprintf("sha256:%x", sha256.Sum256(manifest))
	var fails atomic.Int64
	corrupt := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/latest"):
			w.Header().Set("Docker-Content-Digest", md)
			w.Write(manifest)
		case strings.HasSuffix(r.URL.Path, cd):
			if fails.Add(1) <= 2 {
				http.Error(w, "later", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Docker-Content-Digest", cd)
			w.Write(config)
		case strings.HasSuffix(r.URL.Path, ld):
			w.Header().Set("Docker-Content-Digest", ld)
			if corrupt {
				w.Write([]byte("other bytes"))
				return
			}
			w.Write(layer)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var wrong []string
	p := &Puller{Client: srv.Client(), Base: srv.URL, Wrong: func(path, got, want string) { wrong = append(wrong, path) }}
	ctx := context.Background()
	m, err := p.Pull(ctx, "x")
	if err != nil || len(m.Layers) != 1 || p.Checked() != 3 || p.WrongBodies() != 0 {
		t.Fatalf("Pull: %v, %d checked, %d wrong", err, p.Checked(), p.WrongBodies())
	}
	corrupt = true
	if _, err := p.Pull(ctx, "x"); err != nil || p.WrongBodies() != 1 || len(wrong) != 1 {
		t.Errorf("a wrong body: %v, %d wrong (%v)", err, p.WrongBodies(), wrong)
	}
	if err := p.Blob(ctx, "x", "sha256:"+strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a missing blob: %v", err)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), make([]byte, 5000), 0o644)
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "b"), make([]byte, 100), 0o644)
	if apparent, disk := DirBytes(dir); apparent != 5100 || disk < 5100 {
		t.Errorf("DirBytes = %d, %d", apparent, disk)
	}
}
