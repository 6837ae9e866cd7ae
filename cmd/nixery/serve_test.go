package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/registry"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseServe(t *testing.T) {
	c, err := parseServe(nil, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "localhost:8080" || c.storageBackend != "filesystem" || c.nixTimeout != 60*time.Second ||
		c.maxBuilds != 2 || c.maxLayers != 100 || c.logFormat != "text" || c.storagePath != "" || c.source != (nix.SourceConfig{}) ||
		c.maxQueue != nix.DefaultMaxQueue || c.maxClient != registry.DefaultMaxClientBuilds || c.writeTimeout != registry.DefaultWriteTimeout ||
		c.maxConns != defaultMaxConns || c.maxHeaderBytes != defaultMaxHeaderBytes || c.debugAddr != "" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = parseServe(nil, envMap(map[string]string{"NIXERY_MAX_QUEUE": "0", "NIXERY_MAX_CLIENT_BUILDS": "0", "NIXERY_WRITE_TIMEOUT": "5",
		"NIXERY_MAX_CONNS": "10", "NIXERY_MAX_HEADER_BYTES": "4096", "NIXERY_DEBUG_ADDR": "127.0.0.1:0"}), io.Discard)
	if err != nil || c.maxQueue != 0 || c.maxClient != 0 || c.writeTimeout != 5*time.Second || c.maxConns != 10 || c.maxHeaderBytes != 4096 || c.debugAddr != "127.0.0.1:0" {
		t.Errorf("limits: %+v %v", c, err)
	}
	if orNone(0) != -1 || orNone(3) != 3 {
		t.Error("orNone")
	}

	env := envMap(map[string]string{
		"PORT":                   "9999",
		"NIXERY_CHANNEL":         "nixos-unstable",
		"NIXERY_STORAGE_BACKEND": "filesystem",
		"STORAGE_PATH":           "/srv/nixery",
		"NIX_TIMEOUT":            "90",
		"NIX_POPULARITY_URL":     "/srv/popularity.json",
		"NIXERY_MAX_LAYERS":      "50",
	})
	c, err = parseServe(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "localhost:9999" || c.source.Channel != "nixos-unstable" || c.storagePath != "/srv/nixery" ||
		c.nixTimeout != 90*time.Second || c.popularity != "/srv/popularity.json" || c.maxLayers != 50 {
		t.Errorf("environment: %+v", c)
	}
	// Flags win over the environment.
	c, err = parseServe([]string{"-listen", "127.0.0.1:0", "-nix-timeout", "2m", "-storage-path", "/x"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:0" || c.nixTimeout != 2*time.Minute || c.storagePath != "/x" {
		t.Errorf("flags: %+v", c)
	}

	for _, bad := range []map[string]string{
		{"NIXERY_STORAGE_BACKEND": "gcs"}, // no GCS_BUCKET (see TestGCSServeConfig)
		{"NIXERY_STORAGE_BACKEND": "azure"},
		{"NIX_TIMEOUT": "soon"},
		{"NIX_TIMEOUT": "-1"},
		{"PORT": "http"},
		{"NIXERY_MAX_LAYERS": "200"},
		{"NIXERY_MAX_BUILDS": "0"},
		{"NIXERY_LOG_FORMAT": "xml"},
		{"NIXERY_MAX_QUEUE": "-1"},
		{"NIXERY_MAX_QUEUE": "many"},
		{"NIXERY_MAX_CLIENT_BUILDS": "-2"},
		{"NIXERY_WRITE_TIMEOUT": "0"},
		{"NIXERY_WRITE_TIMEOUT": "never"},
		{"NIXERY_MAX_CONNS": "-1"},
		{"NIXERY_MAX_HEADER_BYTES": "10"},
	} {
		if _, err := parseServe(nil, envMap(bad), io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parseServe([]string{"extra"}, envMap(nil), io.Discard); err == nil {
		t.Error("a stray argument was accepted")
	}
	// Storage: sizes with units, durations, a scrub rate, a bool.
	if c, _ := parseServe(nil, envMap(nil), io.Discard); c.storageLimit != 0 || c.retention != 0 || c.scrubRate != 20e6 || c.nixGC {
		t.Errorf("storage defaults: %+v", c)
	}
	c, err = parseServe(nil, envMap(map[string]string{
		"NIXERY_STORAGE_LIMIT": "500MB", "NIXERY_RETENTION": "720h", "NIXERY_SCRUB_RATE": "0", "NIXERY_NIX_GC": "true",
	}), io.Discard)
	if err != nil || c.storageLimit != 500e6 || c.retention != 720*time.Hour || c.scrubRate >= 0 || !c.nixGC {
		t.Errorf("storage settings: %+v, %v", c, err)
	}
	for s, want := range map[string]int64{"2GB": 2e9, "1.5GiB": 3 << 29, "1000": 1000, "64 MiB": 64 << 20, "10kb": 1e4, "0": 0, "7B": 7} {
		if got, err := parseBytes(s); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	if got := formatBytes(20e6); got != "20MB" {
		t.Errorf("formatBytes(20e6) = %q", got)
	}
	for _, bad := range []map[string]string{
		{"NIXERY_STORAGE_LIMIT": "lots"},
		{"NIXERY_STORAGE_LIMIT": "-5GB"},
		{"NIXERY_STORAGE_LIMIT": "1e30GB"},
		{"NIXERY_RETENTION": "30d"},
		{"NIXERY_RETENTION": "-1h"},
		{"NIXERY_SCRUB_RATE": "fast"},
		{"NIXERY_NIX_GC": "maybe"},
	} {
		if _, err := parseServe(nil, envMap(bad), io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parseServe([]string{"extra"}, envMap(nil), io.Discard); err == nil {
		t.Error("a stray argument was accepted")
	}
	// Two package sources at once are refused when the server starts.
	err = serve(t.Context(), nil, envMap(map[string]string{"NIXERY_CHANNEL": "a", "NIXERY_PKGS_PATH": "/b", "STORAGE_PATH": t.TempDir()}), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "only one package source") {
		t.Errorf("two sources: %v", err)
	}
}

// svStart runs `nixery serve` in this process on a free loopback port with
// storage in dir, and stops it (checking a clean shutdown) at cleanup.
func svStart(t *testing.T, dir string, args ...string) (addr string, log *testutil.SyncBuffer, stop func()) {
	t.Helper()
	log = &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	env := envMap(map[string]string{"STORAGE_PATH": dir, "NIX_TIMEOUT": "600"})
	args = append([]string{"-listen", "127.0.0.1:0"}, args...)
	go func() {
		done <- serve(ctx, args, env, log, func(a string) { ready <- a })
	}()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, log)
	case <-time.After(time.Minute):
		cancel()
		t.Fatalf("serve did not start\n%s", log)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve did not shut down cleanly: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("serve did not stop within a minute of its context ending")
		}
	}
	t.Cleanup(stop)
	return addr, log, stop
}

func svListen(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func svGet(t *testing.T, url, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// svImage pulls name from addr with go-containerregistry and validates it.
func svImage(t *testing.T, addr, img string) v1.Image {
	t.Helper()
	ref, err := name.ParseReference(addr + "/" + img)
	if err != nil {
		t.Fatal(err)
	}
	im, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", img, err)
	}
	if err := validate.Image(im); err != nil {
		t.Fatalf("validate %s: %v", img, err)
	}
	return im
}

// svLayerPaths maps each layer digest of img to the store paths it holds.
func svLayerPaths(t *testing.T, img v1.Image) (digests []string, paths map[string][]string, custom map[string]string) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	paths = map[string][]string{}
	storeDir := regexp.MustCompile(`^/?nix/store/([^/]+)/?$`)
	for i, l := range ls {
		d, _ := l.Digest()
		digests = append(digests, d.String())
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		isLast := i == len(ls)-1
		if isLast {
			custom = map[string]string{}
		}
		for _, e := range testutil.ReadTar(t, rc) {
			h := e.Header
			if m := storeDir.FindStringSubmatch(h.Name); m != nil {
				paths[d.String()] = append(paths[d.String()], m[1])
			}
			if isLast {
				v := h.Linkname
				if h.Typeflag == tar.TypeDir {
					v = fmt.Sprintf("dir %o", h.Mode)
				}
				custom[strings.TrimSuffix(h.Name, "/")] = v
			}
		}
		rc.Close()
	}
	return digests, paths, custom
}

// layerOf returns the digest of the layer holding the store path whose name
// (after the hash) starts with prefix.
func layerOf(paths map[string][]string, prefix string) string {
	for d, ps := range paths {
		for _, p := range ps {
			if _, n, ok := strings.Cut(p, "-"); ok && strings.HasPrefix(n, prefix) {
				return d
			}
		}
	}
	return ""
}

// TestServeRealNix serves the bundled package set with real Nix, real
// layers and the real blob store, and pulls through go-containerregistry.
func TestServeRealNix(t *testing.T) {
	testutil.RequireTools(t, "nix-build")
	dir := t.TempDir()
	addr, log, stop := svStart(t, dir)
	var first string
	for deadline := time.Now().Add(5 * time.Second); first == "" && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		first, _, _ = strings.Cut(log.String(), "\n") // the log goes through a LogBuffer
	}
	if !strings.Contains(first, "nixery serving bundled package set") || !strings.Contains(first, "addr="+addr) {
		t.Errorf("first log line does not say what is served where: %s", first)
	}

	// The images of testdata/golden-digests.json have their pinned digests,
	// where this host's store paths are those they were recorded with.
	for image, entries := range testutil.LoadGolden(t) {
		key := testutil.StorePathsKey(t, svImage(t, addr, image))
		want, pinned := testutil.Golden{image: entries}.Lookup(image, key)
		got := map[string]string{}
		for format, accept := range map[string]string{"docker": "application/vnd.docker.distribution.manifest.v2+json", "oci": "application/vnd.oci.image.manifest.v1+json"} {
			resp, body := svGet(t, "http://"+addr+"/v2/"+image+"/manifests/latest", accept)
			got[format] = resp.Header.Get("Docker-Content-Digest")
			if resp.StatusCode != 200 {
				t.Errorf("%s (%s): %d\n%s", image, format, resp.StatusCode, body)
			}
		}
		if !pinned {
			rec, _ := json.Marshal(testutil.GoldenEntry{StorePaths: key, Docker: got["docker"], OCI: got["oci"]})
			t.Logf("%s: no digest is pinned for this host's store paths; to pin them, add to its list: %s", image, rec)
			continue
		}
		if got["docker"] != want.Docker || got["oci"] != want.OCI {
			t.Errorf("%s: digests %v, golden docker %s oci %s for the same store paths", image, got, want.Docker, want.OCI)
		}
	}

	// shell/curl validates, has the customisation layer last, runs bash.
	img := svImage(t, addr, "shell/curl")
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.Config.Cmd) != "[bash]" || cfg.Architecture != "amd64" || cfg.OS != "linux" {
		t.Errorf("config %+v", cfg)
	}
	curlDigests, curlPaths, custom := svLayerPaths(t, img)
	for _, f := range []string{"bin/curl", "bin/bash", "bin/ls", "bin/sponge", "bin/nano", "usr/bin/env", "etc/ssl"} {
		if !strings.HasPrefix(custom[f], "/nix/store/") {
			t.Errorf("customisation layer: %s = %q", f, custom[f])
		}
	}
	if custom["tmp"] != "dir 1777" {
		t.Errorf("tmp: %q", custom["tmp"])
	}

	// Images share the layers of the large libraries they have in common,
	// by digest: curl and git (through the ssh it runs) share glibc and
	// openssl. Libraries too small to be worth a layer of their own under
	// the pull-time model (layers.Group's step 2: zlib, pcre2) are merged
	// into a layer with the path that uses them most.
	_, gitPaths, _ := svLayerPaths(t, svImage(t, addr, "shell/git"))
	_, sshPaths, _ := svLayerPaths(t, svImage(t, addr, "openssh"))
	for _, c := range []struct {
		lib   string
		other map[string][]string
		name  string
	}{
		{"glibc", gitPaths, "git"}, {"openssl", gitPaths, "git"},
		{"glibc", sshPaths, "openssh"}, {"openssl", sshPaths, "openssh"},
	} {
		a, b := layerOf(curlPaths, c.lib), layerOf(c.other, c.lib)
		if a == "" || a != b {
			t.Errorf("%s: layer %q in shell/curl, %q in %s", c.lib, a, b, c.name)
		}
	}
	for _, lib := range []string{"zlib", "pcre2"} {
		if d := layerOf(curlPaths, lib); d == "" || len(curlPaths[d]) < 2 {
			t.Errorf("%s: a layer of its own in shell/curl (%q: %v), not merged with a user", lib, d, curlPaths[d])
		}
	}

	// Unknown packages, all of them; a system the set cannot build for.
	resp, body := svGet(t, "http://"+addr+"/v2/curl/nosuchthing/alsonot/manifests/latest", "")
	if resp.StatusCode != 404 || !strings.Contains(string(body), "unknown packages: alsonot, nosuchthing") {
		t.Errorf("unknown packages: %d %s", resp.StatusCode, body)
	}
	// The bundled set has one version: only "latest" exists.
	resp, body = svGet(t, "http://"+addr+"/v2/shell/curl/manifests/missing-tag", "")
	if resp.StatusCode != 404 || !strings.Contains(string(body), "MANIFEST_UNKNOWN") {
		t.Errorf("missing tag: %d %s", resp.StatusCode, body)
	}
	// arm64/... is the arm64 image, whose config says linux/arm64/v8.
	resp, body = svGet(t, "http://"+addr+"/v2/arm64/hello/manifests/latest", "")
	var armManifest struct{ Config struct{ Digest string } }
	if resp.StatusCode != 200 || json.Unmarshal(body, &armManifest) != nil {
		t.Errorf("arm64: %d %s", resp.StatusCode, body)
	} else if resp, body := svGet(t, "http://"+addr+"/v2/arm64/hello/blobs/"+armManifest.Config.Digest, ""); resp.StatusCode != 200 ||
		!strings.Contains(string(body), `"architecture":"arm64"`) || !strings.Contains(string(body), `"variant":"v8"`) {
		t.Errorf("arm64 config: %d %.300s", resp.StatusCode, body)
	}

	// Docker sends names in lower case; package nix finds bashInteractive.
	if resp, body := svGet(t, "http://"+addr+"/v2/bashinteractive/manifests/latest", ""); resp.StatusCode != 200 {
		t.Errorf("bashinteractive: %d %s", resp.StatusCode, body)
	}

	// 50 concurrent requests for an image nobody asked for yet: one build,
	// every layer built once. The log is written in the background: the
	// mark is taken once the last request's line is in it.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "path=/v2/bashinteractive/manifests/latest status=200") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	mark := len(log.String())
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			method := "GET"
			if i%2 == 1 {
				method = "HEAD"
			}
			req, _ := http.NewRequest(method, "http://"+addr+"/v2/shell/jq/less/manifests/latest", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 50 {
		t.Errorf("statuses %v", statuses)
	}
	since := log.String()[mark:]
	if n := strings.Count(since, "msg=build "); n != 1 {
		t.Errorf("50 concurrent requests: %d builds, want 1", n)
	}
	built := regexp.MustCompile(`msg="layer built" digest=(sha256:[0-9a-f]{64})`).FindAllStringSubmatch(since, -1)
	seen := map[string]bool{}
	for _, m := range built {
		if seen[m[1]] {
			t.Errorf("layer %s built twice", m[1])
		}
		seen[m[1]] = true
	}

	// Restart: the manifests survive, by tag and by digest, without Nix.
	resp, manifest := svGet(t, "http://"+addr+"/v2/shell/curl/manifests/latest", "application/vnd.oci.image.manifest.v1+json")
	digest := resp.Header.Get("Docker-Content-Digest")
	stop()
	addr2, log2, _ := svStart(t, dir)
	resp, again := svGet(t, "http://"+addr2+"/v2/curl/shell/manifests/"+digest, "")
	if resp.StatusCode != 200 || !bytes.Equal(again, manifest) {
		t.Errorf("after restart, by digest: %d", resp.StatusCode)
	}
	byTag, err := testutil.GetManifest(t.Context(), http.DefaultClient, "http://"+addr2+"/v2/shell/curl/manifests/latest", "")
	if err != nil || len(byTag.Layers) != len(curlDigests) || byTag.Layers[0].Digest.String() != curlDigests[0] {
		t.Errorf("after restart, by tag: %v %+v", err, byTag)
	}
	if strings.Contains(log2.String(), "msg=build ") {
		t.Errorf("after restart a cached image was built again:\n%s", log2)
	}
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestServeNixTimeout: a Nix build that exceeds NIX_TIMEOUT is a 503, and
// the server goes on serving.
func TestServeNixTimeout(t *testing.T) {
	testutil.RequireTools(t, "nix-build")
	addr, log, _ := svStart(t, t.TempDir(), "-nix-timeout", "0.001")
	for range 2 {
		resp, body := svGet(t, "http://"+addr+"/v2/hello/manifests/latest", "")
		if resp.StatusCode != 503 || !strings.Contains(string(body), `"code":"UNAVAILABLE"`) || !strings.Contains(string(body), "timed out") {
			t.Errorf("timeout: %d %s", resp.StatusCode, body)
		}
	}
	if resp, _ := svGet(t, "http://"+addr+"/v2/", ""); resp.StatusCode != 200 {
		t.Errorf("/v2/ after timeouts: %d", resp.StatusCode)
	}
	if !strings.Contains(log.String(), "build failed") {
		t.Errorf("no build failure logged:\n%s", log)
	}
}
