package main

// End-to-end tests: the nixery binary is built, served on loopback with the
// bundled package set, and its images are pulled and run by the real
// clients: the Docker engine, podman (runc), skopeo, crane and the OCI
// distribution-spec conformance suite. Nothing is faked: Nix builds the
// packages, and the containers run the programs that were built.
//
// The test needs nix, docker (with a daemon at $DOCKER_HOST), podman, skopeo,
// crane and oci-conformance; .ci/setup, .ci/setup-clients and
// .ci/dockerd install and start them, and .ci/test runs this test with the
// rest of the suite. A missing tool fails the test; only -short skips it.
//
// Run it alone with
//
//	eval "$(.ci/dockerd start)" && go test -race -run TestE2E -v ./cmd/nixery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The images the end-to-end test pulls. The second has every package of
// the first and jq, so a client that has the first and shares blobs by
// digest (podman) must download only the layers that hold jq's closure and
// the customisation layer; for Docker see testDockerSharedLayers.
const (
	imageCurl   = "shell/curl"
	imageCurlJq = "shell/curl/jq"
)

// Media types of the manifests the test asks for.
const (
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
)

// Time limits. The first request for an image may build its whole closure
// with Nix, so it gets much longer than everything after it.
const (
	buildTimeout   = 15 * time.Minute
	pullTimeout    = 10 * time.Minute
	commandTimeout = 2 * time.Minute
	startTimeout   = 2 * time.Minute
	stopTimeout    = 30 * time.Second
)

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs Nix, a Docker engine, podman, skopeo, crane and oci-conformance (run without -short)")
	}
	requireTools(t)
	srv := startServer(t)

	// Build both images once, over plain HTTP, with a long timeout; every
	// client after this finds them cached.
	t.Run("Build", func(t *testing.T) {
		for _, name := range []string{imageCurl, imageCurlJq} {
			ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
			start := time.Now()
			m := srv.manifest(ctx, t, name, "latest", mediaDockerManifest)
			cancel()
			t.Logf("%s: %d layers, %d bytes, built in %v", name, len(m.Layers), m.size(), time.Since(start).Round(time.Millisecond))
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Run("API", func(t *testing.T) { testAPI(t, srv) })
	t.Run("UnknownPackages", func(t *testing.T) { testUnknownPackages(t, srv) })
	t.Run("HostileNames", func(t *testing.T) { testHostileNames(t, srv) })
	t.Run("DockerSharedLayers", func(t *testing.T) { testDockerSharedLayers(t, srv) })
	t.Run("DockerRun", func(t *testing.T) { testDockerRun(t, srv) })
	t.Run("DockerPullErrors", func(t *testing.T) { testDockerPullErrors(t, srv) })
	t.Run("Skopeo", func(t *testing.T) { testSkopeo(t, srv) })
	t.Run("Crane", func(t *testing.T) { testCrane(t, srv) })
	t.Run("Podman", func(t *testing.T) { testPodman(t, srv) })
	t.Run("Conformance", func(t *testing.T) { testConformance(t, srv) })
}

// requireTools fails the test when a client or the Docker engine is missing.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"nix-build", "nix-store", "docker", "podman", "skopeo", "crane", "oci-conformance"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing on PATH: %s (install with .ci/setup and .ci/setup-clients)", strings.Join(missing, ", "))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := runCmd(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	if err != nil {
		t.Fatalf("no Docker engine answers at DOCKER_HOST=%q: %v\n%s\nstart one with: eval \"$(.ci/dockerd start)\"", os.Getenv("DOCKER_HOST"), err, out)
	}
	t.Logf("Docker engine %s at DOCKER_HOST=%q", strings.TrimSpace(out), os.Getenv("DOCKER_HOST"))
}

// testAPI checks the basics of the registry API with plain HTTP: the ping,
// both manifest media types for the same image, digests, and that every
// blob a manifest names can be fetched and matches its digest.
func testAPI(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	resp := srv.do(ctx, t, http.MethodGet, "/v2/", nil)
	if resp.status != http.StatusOK {
		t.Errorf("GET /v2/: status %d, want 200", resp.status)
	}
	if got := resp.header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
		t.Errorf("GET /v2/: Docker-Distribution-API-Version %q, want registry/2.0", got)
	}

	docker := srv.manifest(ctx, t, imageCurl, "latest", mediaDockerManifest)
	oci := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	if docker.digest == oci.digest {
		t.Errorf("Docker and OCI manifests have the same digest %s", docker.digest)
	}
	if !slices.Equal(docker.layerDigests(), oci.layerDigests()) {
		t.Errorf("Docker and OCI manifests name different layers:\n docker %v\n oci    %v", docker.layerDigests(), oci.layerDigests())
	}
	// Every manifest served by tag can be fetched by digest, byte for byte.
	for _, m := range []*manifest{docker, oci} {
		byDigest := srv.manifest(ctx, t, imageCurl, m.digest, m.MediaType)
		if !bytes.Equal(byDigest.raw, m.raw) {
			t.Errorf("manifest %s fetched by digest differs from the one served by tag", m.digest)
		}
	}
	// Each blob: HEAD gives the size, GET gives bytes with that digest.
	blobs := append([]descriptor{docker.Config}, docker.Layers...)
	for _, b := range blobs {
		head := srv.do(ctx, t, http.MethodHead, "/v2/"+imageCurl+"/blobs/"+b.Digest, nil)
		if head.status != http.StatusOK || head.header.Get("Content-Length") != strconv.FormatInt(b.Size, 10) {
			t.Errorf("HEAD blob %s: status %d, Content-Length %q, want 200 and %d", b.Digest, head.status, head.header.Get("Content-Length"), b.Size)
		}
		get := srv.do(ctx, t, http.MethodGet, "/v2/"+imageCurl+"/blobs/"+b.Digest, nil)
		if get.status != http.StatusOK {
			t.Errorf("GET blob %s: status %d", b.Digest, get.status)
			continue
		}
		if got := sha256Digest(get.body); got != b.Digest || int64(len(get.body)) != b.Size {
			t.Errorf("GET blob %s: got %d bytes with digest %s, want %d bytes", b.Digest, len(get.body), got, b.Size)
		}
	}
	// The config describes every layer.
	cfg := srv.config(ctx, t, imageCurl, docker)
	if len(cfg.RootFS.DiffIDs) != len(docker.Layers) {
		t.Errorf("config has %d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(docker.Layers))
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" {
		t.Errorf("config: architecture %q, os %q; want amd64, linux", cfg.Architecture, cfg.OS)
	}
}

// testUnknownPackages asks for packages the package set does not have: a
// 404 MANIFEST_UNKNOWN that names every one of them.
func testUnknownPackages(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	unknown := []string{"doesnotexist", "alsomissing"}
	for _, name := range []string{"curl/doesnotexist/alsomissing", "alsomissing/shell/doesnotexist"} {
		resp := srv.do(ctx, t, http.MethodGet, "/v2/"+name+"/manifests/latest", nil)
		e := resp.registryError(t)
		if resp.status != http.StatusNotFound || e.Code != "MANIFEST_UNKNOWN" {
			t.Errorf("GET %s: status %d, code %q; want 404 MANIFEST_UNKNOWN (body %s)", name, resp.status, e.Code, resp.body)
		}
		for _, pkg := range unknown {
			if !strings.Contains(e.Message, pkg) {
				t.Errorf("GET %s: message %q does not name %q", name, e.Message, pkg)
			}
		}
		if strings.Contains(e.Message, "curl") {
			t.Errorf("GET %s: message %q names a package that exists", name, e.Message)
		}
	}
	// Names that look like Nix are still only data: attribute names that the
	// package set does not have.
	mark := srv.logOffset(t)
	for _, name := range []string{"builtins.readFile", "builtins.currentSystem", "import", "with", "abort"} {
		resp := srv.do(ctx, t, http.MethodGet, "/v2/"+name+"/manifests/latest", nil)
		e := resp.registryError(t)
		if resp.status != http.StatusNotFound || e.Code != "MANIFEST_UNKNOWN" || !strings.Contains(e.Message, name) {
			t.Errorf("GET %s: status %d, %s %q; want 404 MANIFEST_UNKNOWN naming it", name, resp.status, e.Code, e.Message)
		}
	}
	// The check above means something only if Nix looked the names up.
	if srv.nixRunsSince(t, mark) == 0 {
		t.Errorf("no Nix run logged for the Nix-looking names: the test cannot tell data from code")
	}
}

// testHostileNames sends names that are not package names at all: a clear
// 400 NAME_INVALID, directly (no redirect to some other name), and Nix is
// never run for them.
func testHostileNames(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	mark := srv.logOffset(t)
	defer func() {
		if n := srv.nixRunsSince(t, mark); n != 0 {
			t.Errorf("the server ran Nix %d times for hostile names", n)
		}
	}()
	for _, tc := range []struct{ what, path string }{
		{"Nix interpolation", `/v2/%24%7Bbuiltins.readFile%20%22%2Fetc%2Fpasswd%22%7D/manifests/latest`},
		{"Nix string", `/v2/curl/a%22b/manifests/latest`},
		{"Nix let", `/v2/let%20x%3D1%3Bin%20x/manifests/latest`},
		{"semicolon", `/v2/x%3By/manifests/latest`},
		{"dot-dot", `/v2/shell/../curl/manifests/latest`},
		{"escaped dot-dot", `/v2/shell/%2E%2E/curl/manifests/latest`},
		{"dot-dot blob", `/v2/../../etc/blobs/sha256:` + strings.Repeat("0", 64)},
		{"empty component", `/v2/shell//curl/manifests/latest`},
		{"over-long component", "/v2/" + strings.Repeat("a", 200) + "/manifests/latest"},
		{"over-long name", "/v2/" + strings.Repeat("abcdefgh/", 40) + "x/manifests/latest"},
		{"hundreds of components", "/v2/" + strings.Repeat("a/", 300) + "a/manifests/latest"},
		{"non-ASCII", `/v2/caf%C3%A9/manifests/latest`},
		{"leading dash", `/v2/-rf/manifests/latest`},
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			start := time.Now()
			resp := srv.do(ctx, t, method, tc.path, nil)
			if resp.status != http.StatusBadRequest {
				t.Errorf("%s %s (%s): status %d, want 400 (body %.200s)", method, tc.what, tc.path, resp.status, resp.body)
				continue
			}
			if method == http.MethodHead {
				continue
			}
			e := resp.registryError(t)
			if e.Code != "NAME_INVALID" || e.Message == "" {
				t.Errorf("GET %s (%s): status %d, code %q, message %q; want 400 NAME_INVALID with a message", tc.what, tc.path, resp.status, e.Code, e.Message)
			}
			// Rejected before Nix runs: no evaluation could answer this fast.
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("GET %s took %v: was Nix run?", tc.what, d)
			}
		}
	}
}

// testDockerSharedLayers pulls two images that share packages with the
// Docker engine and checks, from Docker's progress output and from the
// server's request log, what the second pull downloads.
//
// Docker's classic image store (Debian's docker.io) reuses a layer only when
// the whole chain of layers below it is present: once it meets a layer it
// lacks, it downloads every layer after it, shared or not. (Clients that
// share blobs by digest, podman and containerd, fetch exactly the new
// layers: testPodman checks that.) So the test demands exactly Docker's
// behaviour, the longest shared prefix reused and everything after it
// fetched, and that this prefix holds at least minDockerReuse of the bytes
// the two images share: layers must be ordered most shared first. No order
// makes the prefix all of the shared layers for every pair of images: the
// layer of a newly added top-level package (jq) sorts somewhere among the
// other top-level packages' layers, and those after it are fetched again.
// The shared dependencies (glibc, openssl, ...) must come before it.
func testDockerSharedLayers(t *testing.T, srv *server) {
	const minDockerReuse = 0.75
	ctx, cancel := context.WithTimeout(t.Context(), 2*pullTimeout)
	defer cancel()
	first, second := srv.ref(imageCurl), srv.ref(imageCurlJq)
	// Layers left by an earlier run would show up as "Already exists".
	removeStaleImages(ctx, t, imageCurl, imageCurlJq)
	t.Cleanup(func() { dockerRemove(t, first, second) })

	m1 := srv.manifest(ctx, t, imageCurl, "latest", mediaDockerManifest)
	m2 := srv.manifest(ctx, t, imageCurlJq, "latest", mediaDockerManifest)
	shared, fresh := splitLayers(m1, m2)
	if len(shared) == 0 {
		t.Fatalf("%s shares no layer with %s", imageCurlJq, imageCurl)
	}
	if len(fresh) == 0 {
		t.Fatalf("%s has no layer that %s lacks", imageCurlJq, imageCurl)
	}
	prefix := m2.layerDigests()[:firstFreshIndex(m2, m1)]
	rest := m2.layerDigests()[len(prefix):]
	t.Logf("%s: %d of %d layers (%d of %d bytes) shared with %s; the first %d (%d bytes) are a shared prefix that Docker can reuse",
		imageCurlJq, len(shared), len(m2.Layers), sizeOf(m2, shared), m2.size(), imageCurl, len(prefix), sizeOf(m2, prefix))

	out := mustRun(ctx, t, "docker", "pull", first)
	if n := len(dockerProgress(out, "Already exists")); n != 0 {
		t.Fatalf("first pull found %d layers already present (stale layers in the engine?):\n%s", n, out)
	}
	mark := srv.logOffset(t)
	out = mustRun(ctx, t, "docker", "pull", second)
	t.Logf("docker pull %s:\n%s", second, out)

	existed := dockerProgress(out, "Already exists")
	if want := shortDigests(prefix); !slices.Equal(sorted(existed), want) {
		t.Errorf("docker reported %v as already present, want the shared prefix %v", sorted(existed), want)
	}
	wantFetched := append(slices.Clone(rest), m2.Config.Digest)
	fetched := srv.blobsFetchedSince(t, mark, wantFetched)
	if got := sorted(fetched); !slices.Equal(got, sorted(wantFetched)) {
		t.Errorf("server sent blobs %v during the second pull, want the config and the layers after the shared prefix %v", got, sorted(wantFetched))
	}
	reused, all := sizeOf(m2, prefix), sizeOf(m2, shared)
	t.Logf("Docker reused %d of the %d bytes the images share (%.1f%%) and fetched %d shared bytes again", reused, all, 100*float64(reused)/float64(all), all-reused)
	if float64(reused) < minDockerReuse*float64(all) {
		t.Errorf("Docker reused %d of the %d bytes the images share (less than %.0f%%): a layer only %s has comes before shared ones (%v)", reused, all, 100*minDockerReuse, imageCurlJq, fresh)
	}
}

// testDockerRun runs programs from the image in the Docker engine, with no
// network. The first run is the README's: docker run pulls the image itself,
// named by localhost.
func testDockerRun(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	_, port, _ := net.SplitHostPort(srv.addr)
	ref := "localhost:" + port + "/" + imageCurl
	removeStaleImages(ctx, t, imageCurl)
	t.Cleanup(func() { dockerRemove(t, ref) })

	out := mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", ref, "curl", "--version")
	if !regexp.MustCompile(`(?m)^curl \d+\.\d+\.\d+ `).MatchString(out) {
		t.Errorf("curl --version printed:\n%s", out)
	}
	t.Logf("curl --version: %s", firstLine(out))

	out = mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", ref, "bash", "-c", "ls /bin")
	bins := strings.Fields(out)
	for _, want := range []string{"bash", "curl", "ls", "cat", "nano", "sponge"} {
		if !slices.Contains(bins, want) {
			t.Errorf("ls /bin does not list %q:\n%s", want, out)
		}
	}

	// The customisation layer: users, /tmp, certificates, /usr/bin/env.
	script := `set -e
id -un
stat -c %a /tmp
test -s "$SSL_CERT_FILE" && echo certs
/usr/bin/env bash -c 'echo env'
cut -d: -f1 /etc/passwd | sort
cut -d: -f1 /etc/group | sort`
	out = mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", ref, "bash", "-c", script)
	if got, want := strings.Fields(out), []string{"root", "1777", "certs", "env", "nobody", "root", "nogroup", "root"}; !slices.Equal(got, want) {
		t.Errorf("inside the container (user, /tmp mode, certificates, /usr/bin/env, users, groups): got %q, want %q", got, want)
	}

	// The image config as Docker reads it.
	out = mustRun(ctx, t, "docker", "image", "inspect", "--format", "{{json .}}", ref)
	var inspect struct {
		Architecture, Os string
		Config           struct {
			Cmd []string
			Env []string
		}
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(out), &inspect); err != nil {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	if inspect.Architecture != "amd64" || inspect.Os != "linux" {
		t.Errorf("image is %s/%s, want linux/amd64", inspect.Os, inspect.Architecture)
	}
	if !slices.Equal(inspect.Config.Cmd, []string{"bash"}) {
		t.Errorf("Cmd %q, want [bash] (set by the shell meta-package)", inspect.Config.Cmd)
	}
	for _, prefix := range []string{"PATH=", "SSL_CERT_FILE="} {
		if !slices.ContainsFunc(inspect.Config.Env, func(e string) bool { return strings.HasPrefix(e, prefix) }) {
			t.Errorf("Env %q has no %s", inspect.Config.Env, prefix)
		}
	}
	m := srv.manifest(ctx, t, imageCurl, "latest", mediaDockerManifest)
	if len(inspect.RootFS.Layers) != len(m.Layers) {
		t.Errorf("Docker sees %d layers, the manifest has %d", len(inspect.RootFS.Layers), len(m.Layers))
	}
}

// testDockerPullErrors checks what a Docker user sees for names the server
// refuses.
func testDockerPullErrors(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	for _, tc := range []struct {
		what, name string
		want       []string
	}{
		{"unknown packages", "curl/doesnotexist/alsomissing", []string{"manifest unknown", "doesnotexist", "alsomissing"}},
		{"over-long package name", strings.Repeat("a", 200), []string{"invalid"}},
		{"too many packages", strings.TrimSuffix(strings.Repeat("a/", 100), "/"), []string{"invalid"}},
	} {
		ref := srv.ref(tc.name)
		out, err := runCmd(ctx, "docker", "pull", ref)
		if err == nil {
			dockerRemove(t, ref)
			t.Errorf("%s: docker pull %s succeeded:\n%s", tc.what, ref, out)
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: docker pull timed out", tc.what)
		}
		for _, w := range tc.want {
			if !strings.Contains(strings.ToLower(out), strings.ToLower(w)) {
				t.Errorf("%s: docker pull output does not mention %q:\n%s", tc.what, w, out)
			}
		}
		t.Logf("%s: %s", tc.what, strings.TrimSpace(lastLine(out)))
	}
}

// testSkopeo copies the image into an OCI layout and validates what landed.
func testSkopeo(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "oci")
	mustRun(ctx, t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+srv.ref(imageCurl), "oci:"+dir+":latest")

	raw, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	var ol struct{ ImageLayoutVersion string }
	if err := json.Unmarshal(raw, &ol); err != nil || ol.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout %s: version %q, err %v", raw, ol.ImageLayoutVersion, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Fatalf("index.json: %+v, want one manifest tagged latest", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	// The structure: manifest, config and descriptors agree. (The layers'
	// contents are checked by digest below and in full by crane validate;
	// decompressing them here under the race detector would take a minute.)
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Errorf("the copied image is invalid: %v", err)
	}
	// Every blob in the layout has the digest it is filed under.
	blobDir := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if got := fileDigest(t, filepath.Join(blobDir, e.Name())); got != "sha256:"+e.Name() {
			t.Errorf("layout blob %s has digest %s", e.Name(), got)
		}
	}
	// The same layers, with the same diff IDs, as the registry serves.
	copied, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var got, gotDiffIDs []string
	for _, l := range copied.Layers {
		got = append(got, l.Digest.String())
	}
	for _, d := range cfg.RootFS.DiffIDs {
		gotDiffIDs = append(gotDiffIDs, d.String())
	}
	m := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	if want := m.layerDigests(); !slices.Equal(got, want) {
		t.Errorf("copied layers %v, want the registry's %v", got, want)
	}
	if want := srv.config(ctx, t, imageCurl, m).RootFS.DiffIDs; !slices.Equal(gotDiffIDs, want) {
		t.Errorf("copied diff IDs %v, want the registry's %v", gotDiffIDs, want)
	}
}

// fileDigest is the OCI digest of a file's content.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

// testCrane validates the image in the registry with crane (digests, diff
// IDs, sizes, duplicate tar entries).
func testCrane(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	for _, name := range []string{imageCurl, imageCurlJq} {
		out := mustRun(ctx, t, "crane", "validate", "--remote", srv.ref(name))
		if !strings.Contains(out, "PASS") || strings.Contains(out, "FAIL") {
			t.Errorf("crane validate --remote %s:\n%s", name, out)
		}
		out = mustRun(ctx, t, "crane", "config", srv.ref(name))
		var cfg imageConfig
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Errorf("crane config %s: %v", name, err)
		}
	}
}

// testPodman runs the image with podman and runc, in a private store, and
// pulls the second image to check that podman, which shares blobs by
// digest, fetches only the layers it lacks (from the server's request log:
// podman prints "skipped: already exists" only on a terminal).
func testPodman(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*pullTimeout)
	defer cancel()
	base := t.TempDir()
	podman := func(args ...string) []string {
		return append([]string{"podman",
			"--root", filepath.Join(base, "root"),
			"--runroot", filepath.Join(base, "runroot"),
			"--tmpdir", filepath.Join(base, "tmp"),
			"--cgroup-manager", "cgroupfs",
			"--events-backend", "file",
		}, args...)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		if out, err := runCmd(ctx, podman("rmi", "--all", "--force")...); err != nil {
			t.Errorf("podman rmi: %v\n%s", err, out)
		}
	})

	out := mustRun(ctx, t, podman("run", "--rm", "--runtime", "runc",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--network", "none", "--tls-verify=false",
		srv.ref(imageCurl), "curl", "--version")...)
	if !regexp.MustCompile(`(?m)^curl \d+\.\d+\.\d+ `).MatchString(out) {
		t.Errorf("podman run curl --version printed:\n%s", out)
	}

	m1 := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	m2 := srv.manifest(ctx, t, imageCurlJq, "latest", mediaOCIManifest)
	_, fresh := splitLayers(m1, m2)
	mark := srv.logOffset(t)
	mustRun(ctx, t, podman("pull", "--tls-verify=false", srv.ref(imageCurlJq))...)
	wantFetched := append(slices.Clone(fresh), m2.Config.Digest)
	fetched := srv.blobsFetchedSince(t, mark, wantFetched)
	if !slices.Equal(sorted(fetched), sorted(wantFetched)) {
		t.Errorf("server sent blobs %v during podman's second pull, want the config and the new layers %v", sorted(fetched), sorted(wantFetched))
	}
}

// testConformance runs the OCI distribution-spec conformance suite in
// read-only mode against an image the server built. The suite panics
// after printing its summary when it writes results.yaml in read-only mode
// and then exits 2, so the summary is judged, not the exit status.
func testConformance(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	docker := srv.manifest(ctx, t, imageCurl, "latest", mediaDockerManifest)
	oci := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	blobs := []string{docker.Config.Digest}
	if oci.Config.Digest != docker.Config.Digest {
		blobs = append(blobs, oci.Config.Digest)
	}
	blobs = append(blobs, docker.layerDigests()...)

	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, "oci-conformance")
	cmd.Dir = dir
	cmd.Env = withoutPrefix(os.Environ(), "OCI_")
	cmd.Env = append(cmd.Env,
		"OCI_REGISTRY="+srv.addr,
		"OCI_TLS=disabled",
		"OCI_REPO1="+imageCurl,
		"OCI_REPO2="+imageCurl,
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"),
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_API_REFERRER=false",
		"OCI_RO_DATA_TAGS=latest",
		"OCI_RO_DATA_MANIFESTS="+strings.Join([]string{docker.digest, oci.digest}, " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(blobs, " "),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("oci-conformance timed out\n%s\n%s", stdout.String(), stderr.String())
	}
	sum, perr := parseConformance(stdout.String())
	if perr != nil {
		t.Fatalf("oci-conformance (exit %v): %v\nstdout:\n%s\nstderr:\n%s", err, perr, stdout.String(), tail(stderr.String(), 40))
	}
	t.Logf("oci-conformance: %s; passed %d, failed %d, errors %d, disabled %d (exit %v)", sum.status, sum.pass, sum.fail, sum.errors, sum.disabled, err)
	if sum.status != "Pass" || sum.fail != 0 || sum.errors != 0 || sum.pass == 0 {
		t.Errorf("conformance suite did not pass:\n%s", stdout.String())
	}
	// The pull tests ran and passed, for tag, digest and blobs.
	for _, test := range []string{"read-only/pull/manifest-by-tag", "read-only/pull/manifest-by-digest", "read-only/pull/blob-get", "read-only/head/manifest-head-by-tag", "read-only/head/blob-head"} {
		if got := sum.results[test]; len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != "Pass" }) {
			t.Errorf("conformance test %s: %v, want Pass", test, got)
		}
	}
}

// conformanceSummary is what parseConformance reads from the suite's report.
type conformanceSummary struct {
	status                       string              // "Pass" or "Fail"
	pass, fail, errors, disabled int                 // the result counts
	results                      map[string][]string // test name (below "OCI Conformance Test/") to its results
}

// parseConformance reads the report the conformance suite prints:
//
//	Test results
//	OCI Conformance Test: Pass
//	  OCI Conformance Test/ping: Pass
//	...
//	OCI Conformance Result: Pass
//	  Pass..........................:         14
//	  FAIL..........................:          0
func parseConformance(out string) (*conformanceSummary, error) {
	s := &conformanceSummary{results: map[string][]string{}}
	counts := map[string]*int{"Pass": &s.pass, "FAIL": &s.fail, "Error": &s.errors, "Disabled": &s.disabled}
	sawCounts := false
	inResult := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case s.status == "" && strings.HasPrefix(line, "OCI Conformance Test: "):
			s.status = strings.TrimPrefix(line, "OCI Conformance Test: ")
		case strings.HasPrefix(line, "OCI Conformance Test/"):
			name, result, ok := strings.Cut(strings.TrimPrefix(line, "OCI Conformance Test/"), ": ")
			if ok {
				s.results[name] = append(s.results[name], result)
			}
		case strings.HasPrefix(line, "OCI Conformance Result: "):
			inResult = true
		case inResult && strings.Contains(line, "...:"):
			// "Pass..........................:         14"
			name, _, _ := strings.Cut(line, ".")
			v, err := strconv.Atoi(strings.TrimSpace(line[strings.LastIndex(line, ":")+1:]))
			if p, ok := counts[name]; ok && err == nil {
				*p = v
				sawCounts = true
			}
		case inResult && line == "":
			inResult = false
		}
	}
	if s.status == "" {
		return nil, errors.New(`no "OCI Conformance Test:" line in the report`)
	}
	if !sawCounts {
		return nil, errors.New("no result counts in the report")
	}
	return s, nil
}

// A server is a running `nixery serve`.
type server struct {
	addr    string // 127.0.0.1:port
	logPath string
	client  *http.Client
}

// startServer builds the nixery binary, serves the bundled package set on a
// free loopback port with a temporary storage directory, and waits for /v2/
// to answer. It stops the server with SIGTERM at cleanup and checks that it
// shut down cleanly.
//
// The binary is built without the race detector even under -race: it
// makes building layers (compression) some twenty times slower, over a
// minute here, and the same code runs under -race in the in-process tests
// of packages registry and layers and of serve.
func startServer(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "nixery")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	mustRun(ctx, t, "go", "build", "-o", bin, ".")

	port := freePort(t)
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(withoutPrefix(os.Environ(), "NIXERY_", "STORAGE_PATH=", "PORT=", "NIX_TIMEOUT=", "NIX_POPULARITY_URL="),
		"PORT="+strconv.Itoa(port),
		"NIXERY_STORAGE_BACKEND=filesystem",
		"STORAGE_PATH="+filepath.Join(dir, "storage"),
		"NIX_TIMEOUT=600",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()

	srv := &server{
		addr:    "127.0.0.1:" + strconv.Itoa(port),
		logPath: logPath,
		client: &http.Client{
			// A redirect is an answer to check, never to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("server log (last lines):\n%s", tail(srv.log(t), 60))
			}
		}()
		select {
		case err := <-exited:
			t.Errorf("nixery serve exited during the test: %v", err)
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("nixery serve did not shut down cleanly on SIGTERM: %v", err)
			}
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-exited
			t.Errorf("nixery serve did not stop within %v of SIGTERM", stopTimeout)
		}
	})

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("nixery serve exited at start: %v\n%s", err, tail(srv.log(t), 40))
		default:
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+srv.addr+"/v2/", nil)
		resp, err := srv.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nixery serve did not answer /v2/ on %s within %v (last: %v)\n%s", srv.addr, startTimeout, err, tail(srv.log(t), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("nixery serve on %s; first log line: %s", srv.addr, firstLine(srv.log(t)))
	return srv
}

// ref is the image reference clients use for name.
func (s *server) ref(name string) string { return s.addr + "/" + name }

func (s *server) log(t *testing.T) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Errorf("server log: %v", err)
	}
	return string(b)
}

func (s *server) logOffset(t *testing.T) int { return len(s.log(t)) }

// blobDigest matches a blob request in the server's request log, whatever
// the log format: the digest that follows "/blobs/" in the request path.
var blobDigest = regexp.MustCompile(`/blobs/(sha256:[0-9a-f]{64})`)

// blobsFetchedSince returns the blobs the server was asked to GET after
// the log offset mark, each once.
//
// A request is logged when its response is done, which may be a moment
// after the client has finished: it waits up to five seconds for every blob
// in want to show up, then a little longer for any it did not expect.
func (s *server) blobsFetchedSince(t *testing.T, mark int, want []string) []string {
	t.Helper()
	read := func() []string {
		var got []string
		for _, line := range strings.Split(s.log(t)[mark:], "\n") {
			if strings.Contains(line, "HEAD") {
				continue
			}
			for _, m := range blobDigest.FindAllStringSubmatch(line, -1) {
				if !slices.Contains(got, m[1]) {
					got = append(got, m[1])
				}
			}
		}
		return got
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got := read()
		if !slices.ContainsFunc(want, func(d string) bool { return !slices.Contains(got, d) }) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	got := read()
	if len(got) == 0 {
		t.Errorf("the server log shows no blob requests since the mark; it must log one line per request with its path")
	}
	return got
}

// nixRunsSince counts the Nix processes the server logged after the log
// offset mark.
func (s *server) nixRunsSince(t *testing.T, mark int) int {
	return strings.Count(s.log(t)[mark:], `msg="nix command"`)
}

// response is an HTTP response read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the server.
func (s *server) do(ctx context.Context, t *testing.T, method, path string, header http.Header) *response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.addr+path, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}
}

// registryError decodes the spec's error body and returns its first error.
func (r *response) registryError(t *testing.T) registryError {
	t.Helper()
	var body struct{ Errors []registryError }
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 {
		t.Errorf("status %d: body is not the spec's error JSON: %.300s", r.status, r.body)
		return registryError{}
	}
	return body.Errors[0]
}

type registryError struct {
	Code    string
	Message string
}

// descriptor, manifest and imageConfig are the parts of the image format
// the test reads.
type descriptor struct {
	MediaType string
	Digest    string
	Size      int64
}

type manifest struct {
	SchemaVersion int
	MediaType     string
	Config        descriptor
	Layers        []descriptor

	raw    []byte
	digest string
}

type imageConfig struct {
	Architecture string
	OS           string
	RootFS       struct {
		Type    string
		DiffIDs []string `json:"diff_ids"`
	}
}

func (m *manifest) layerDigests() []string {
	var ds []string
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

func (m *manifest) size() int64 { return sizeOf(m, m.layerDigests()) }

// manifest fetches and checks the manifest of name at reference (a tag or
// digest) in the media type accept.
func (s *server) manifest(ctx context.Context, t *testing.T, name, reference, accept string) *manifest {
	t.Helper()
	path := "/v2/" + name + "/manifests/" + reference
	resp := s.do(ctx, t, http.MethodGet, path, http.Header{"Accept": {accept}})
	if resp.status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %.500s", path, resp.status, resp.body)
	}
	m := &manifest{raw: resp.body, digest: sha256Digest(resp.body)}
	if err := json.Unmarshal(resp.body, m); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if got := resp.header.Get("Content-Type"); got != accept || m.MediaType != accept {
		t.Fatalf("GET %s with Accept %s: Content-Type %q, mediaType %q", path, accept, got, m.MediaType)
	}
	if got := resp.header.Get("Docker-Content-Digest"); got != m.digest {
		t.Errorf("GET %s: Docker-Content-Digest %q, body digest %s", path, got, m.digest)
	}
	if m.SchemaVersion != 2 || len(m.Layers) == 0 {
		t.Fatalf("GET %s: schemaVersion %d with %d layers", path, m.SchemaVersion, len(m.Layers))
	}
	return m
}

// config fetches and decodes the config of m.
func (s *server) config(ctx context.Context, t *testing.T, name string, m *manifest) *imageConfig {
	t.Helper()
	resp := s.do(ctx, t, http.MethodGet, "/v2/"+name+"/blobs/"+m.Config.Digest, nil)
	var cfg imageConfig
	if resp.status != http.StatusOK {
		t.Fatalf("config %s: status %d", m.Config.Digest, resp.status)
	}
	if err := json.Unmarshal(resp.body, &cfg); err != nil {
		t.Fatalf("config %s: %v", m.Config.Digest, err)
	}
	return &cfg
}

// splitLayers returns the layers of b that a has (shared) and those it
// lacks (fresh), in b's order.
func splitLayers(a, b *manifest) (shared, fresh []string) {
	have := a.layerDigests()
	for _, d := range b.layerDigests() {
		if slices.Contains(have, d) {
			shared = append(shared, d)
		} else {
			fresh = append(fresh, d)
		}
	}
	return shared, fresh
}

// firstFreshIndex is the position of b's first layer that a lacks.
func firstFreshIndex(b, a *manifest) int {
	have := a.layerDigests()
	for i, d := range b.layerDigests() {
		if !slices.Contains(have, d) {
			return i
		}
	}
	return len(b.Layers)
}

func sizeOf(m *manifest, digests []string) int64 {
	var n int64
	for _, l := range m.Layers {
		if slices.Contains(digests, l.Digest) {
			n += l.Size
		}
	}
	return n
}

// shortDigests returns the 12-hex-digit prefixes clients print, sorted.
func shortDigests(digests []string) []string {
	var s []string
	for _, d := range digests {
		s = append(s, strings.TrimPrefix(d, "sha256:")[:12])
	}
	return sorted(s)
}

// dockerProgress returns the layer IDs for which docker pull printed
// status, e.g. "0123456789ab: Already exists".
func dockerProgress(out, status string) []string {
	re := regexp.MustCompile(`(?m)^([0-9a-f]{12}): ` + regexp.QuoteMeta(status) + `\s*$`)
	var ids []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// removeStaleImages removes images that an earlier run pulled from a
// loopback registry under the test's names, so their layers cannot be
// mistaken for shared ones.
func removeStaleImages(ctx context.Context, t *testing.T, names ...string) {
	t.Helper()
	out := mustRun(ctx, t, "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
	stale := regexp.MustCompile(`^(127\.0\.0\.1|localhost):\d+/(.*):`)
	var refs []string
	for _, ref := range strings.Fields(out) {
		if m := stale.FindStringSubmatch(ref); m != nil && slices.Contains(names, m[2]) {
			refs = append(refs, ref)
		}
	}
	if len(refs) > 0 {
		t.Logf("removing stale images %v", refs)
		dockerRemove(t, refs...)
	}
}

// dockerRemove removes images from the Docker engine, ignoring ones that
// are not there.
func dockerRemove(t *testing.T, refs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for _, ref := range refs {
		if out, err := runCmd(ctx, "docker", "image", "rm", "--force", ref); err != nil && !strings.Contains(out, "No such image") {
			t.Errorf("docker image rm %s: %v\n%s", ref, err, out)
		}
	}
}

// runCmd runs a program and returns its combined output. The context
// bounds it; WaitDelay bounds a child that keeps the output open.
func runCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return string(out), err
}

// mustRun runs a program and fails the test with its output if it fails.
func mustRun(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := runCmd(ctx, args...)
	if err != nil {
		t.Fatalf("%s: %v (after %v)\n%s", strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond), tail(out, 60))
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// withoutPrefix drops the environment entries that start with any prefix.
func withoutPrefix(env []string, prefixes ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(e string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(e, p) })
	})
}

// sha256Digest is the OCI digest of b.
func sha256Digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
