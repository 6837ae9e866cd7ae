package main

// End-to-end tests: the nixery binary is built, served on loopback with the
// bundled package set, and its images are pulled and run by the real
// clients: the Docker engine, podman (runc), skopeo, crane, oras (the
// SBOM, through the referrers API) and the OCI distribution-spec
// conformance suite. Nothing is faked: Nix builds the
// packages, and the containers run the programs that were built.
//
// The test needs nix, docker (with a daemon at $DOCKER_HOST), ctr (its
// containerd), the aarch64 emulator registered with binfmt_misc, podman,
// skopeo, crane, oci-conformance and oras; .ci/setup, .ci/setup-clients and
// .ci/dockerd install and start them, and .ci/test runs this test with the
// rest of the suite. A missing tool fails the test; only -short skips it.
//
// This file holds the scenarios; e2e_server_test.go the server harness
// (testutil's launcher and what the scenarios read from the server's log);
// e2e_client_test.go the HTTP client, the manifest helpers and the commands
// that drive the other clients. Run it alone with
//
//	eval "$(.ci/dockerd start)" && go test -race -run TestE2E -v ./cmd/nixery

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nixery-go/nixery/internal/testutil"
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
)

func TestE2E(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store", "nix", "docker", "podman", "skopeo", "crane", "oci-conformance", "oras", "ctr")
	requireEmulator(t)
	srv := startServer(t)

	// Build both images once, over plain HTTP, with a long timeout; every
	// client after this finds them cached.
	t.Run("Build", func(t *testing.T) {
		for _, name := range []string{imageCurl, imageCurlJq} {
			ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
			start := time.Now()
			m := srv.manifest(ctx, t, name, "latest", mediaDockerManifest)
			cancel()
			t.Logf("%s: %d layers, %d bytes, built in %v", name, len(m.Layers), m.LayerBytes(), time.Since(start).Round(time.Millisecond))
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
	t.Run("ORAS", func(t *testing.T) { testORAS(t, srv) })
	t.Run("MultiArch", func(t *testing.T) { testMultiArch(t, srv) })
	t.Run("Conformance", func(t *testing.T) { testConformance(t, srv) })
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
	if docker.Digest == oci.Digest {
		t.Errorf("Docker and OCI manifests have the same digest %s", docker.Digest)
	}
	if !slices.Equal(docker.LayerDigests(), oci.LayerDigests()) {
		t.Errorf("Docker and OCI manifests name different layers:\n docker %v\n oci    %v", docker.LayerDigests(), oci.LayerDigests())
	}
	// Every manifest served by tag can be fetched by digest, byte for byte.
	for _, m := range []*testutil.Manifest{docker, oci} {
		byDigest := srv.manifest(ctx, t, imageCurl, m.Digest.String(), string(m.MediaType))
		if !bytes.Equal(byDigest.Raw, m.Raw) {
			t.Errorf("manifest %s fetched by digest differs from the one served by tag", m.Digest)
		}
	}
	// Each blob: HEAD gives the size, GET gives bytes with that digest.
	blobs := append([]v1.Descriptor{docker.Config}, docker.Layers...)
	for _, b := range blobs {
		head := srv.do(ctx, t, http.MethodHead, "/v2/"+imageCurl+"/blobs/"+b.Digest.String(), nil)
		if head.status != http.StatusOK || head.header.Get("Content-Length") != strconv.FormatInt(b.Size, 10) {
			t.Errorf("HEAD blob %s: status %d, Content-Length %q, want 200 and %d", b.Digest, head.status, head.header.Get("Content-Length"), b.Size)
		}
		get := srv.do(ctx, t, http.MethodGet, "/v2/"+imageCurl+"/blobs/"+b.Digest.String(), nil)
		if get.status != http.StatusOK {
			t.Errorf("GET blob %s: status %d", b.Digest, get.status)
			continue
		}
		if got := sha256Digest(get.body); got != b.Digest.String() || int64(len(get.body)) != b.Size {
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
	mark := srv.Mark()
	for _, name := range []string{"builtins.readFile", "builtins.currentSystem", "import", "with", "abort"} {
		resp := srv.do(ctx, t, http.MethodGet, "/v2/"+name+"/manifests/latest", nil)
		e := resp.registryError(t)
		if resp.status != http.StatusNotFound || e.Code != "MANIFEST_UNKNOWN" || !strings.Contains(e.Message, name) {
			t.Errorf("GET %s: status %d, %s %q; want 404 MANIFEST_UNKNOWN naming it", name, resp.status, e.Code, e.Message)
		}
	}
	// The check above means something only if Nix looked the names up.
	if srv.nixRunsSince(mark) == 0 {
		t.Errorf("no Nix run logged for the Nix-looking names: the test cannot tell data from code")
	}
}

// testHostileNames sends names that are not package names at all: a clear
// 400 NAME_INVALID, directly (no redirect to some other name), and Nix is
// never run for them.
func testHostileNames(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	mark := srv.Mark()
	defer func() {
		if n := srv.nixRunsSince(mark); n != 0 {
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
	first, second := srv.Ref(imageCurl), srv.Ref(imageCurlJq)
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
	prefix := m2.LayerDigests()[:firstFreshIndex(m2, m1)]
	rest := m2.LayerDigests()[len(prefix):]
	t.Logf("%s: %d of %d layers (%d of %d bytes) shared with %s; the first %d (%d bytes) are a shared prefix that Docker can reuse",
		imageCurlJq, len(shared), len(m2.Layers), sizeOf(m2, shared), m2.LayerBytes(), imageCurl, len(prefix), sizeOf(m2, prefix))

	out := mustRun(ctx, t, "docker", "pull", first)
	if n := len(dockerProgress(out, "Already exists")); n != 0 {
		t.Fatalf("first pull found %d layers already present (stale layers in the engine?):\n%s", n, out)
	}
	mark := srv.Mark()
	out = mustRun(ctx, t, "docker", "pull", second)
	t.Logf("docker pull %s:\n%s", second, out)

	existed := dockerProgress(out, "Already exists")
	if want := shortDigests(prefix); !slices.Equal(sorted(existed), want) {
		t.Errorf("docker reported %v as already present, want the shared prefix %v", sorted(existed), want)
	}
	wantFetched := append(slices.Clone(rest), m2.Config.Digest.String())
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
	ref := localhostRef(srv.Addr, imageCurl)
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
		ref := srv.Ref(tc.name)
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
	mustRun(ctx, t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+srv.Ref(imageCurl), "oci:"+dir+":latest")

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
	var got []string
	for _, l := range copied.Layers {
		got = append(got, l.Digest.String())
	}
	gotDiffIDs := cfg.RootFS.DiffIDs
	m := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	if want := m.LayerDigests(); !slices.Equal(got, want) {
		t.Errorf("copied layers %v, want the registry's %v", got, want)
	}
	if want := srv.config(ctx, t, imageCurl, m).RootFS.DiffIDs; !slices.Equal(gotDiffIDs, want) {
		t.Errorf("copied diff IDs %v, want the registry's %v", gotDiffIDs, want)
	}
}

// testCrane validates the image in the registry with crane (digests, diff
// IDs, sizes, duplicate tar entries).
func testCrane(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	for _, name := range []string{imageCurl, imageCurlJq} {
		out := mustRun(ctx, t, "crane", "validate", "--remote", srv.Ref(name))
		if !strings.Contains(out, "PASS") || strings.Contains(out, "FAIL") {
			t.Errorf("crane validate --remote %s:\n%s", name, out)
		}
		out = mustRun(ctx, t, "crane", "config", srv.Ref(name))
		if _, err := v1.ParseConfigFile(strings.NewReader(out)); err != nil {
			t.Errorf("crane config %s: %v", name, err)
		}
	}
}

// podmanRun is `podman run --rm` with what podman needs on this machine:
// runc, and limits no higher than the test's own.
var podmanRun = []string{"run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// privatePodman returns podman's command line with args, in a store of
// t's own (cgroupfs, events to a file), whose images are removed at
// cleanup.
func privatePodman(t *testing.T) func(args ...string) []string {
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
	return podman
}

// testPodman runs the image with podman and runc, in a private store, and
// pulls the second image to check that podman, which shares blobs by
// digest, fetches only the layers it lacks (from the server's request log:
// podman prints "skipped: already exists" only on a terminal).
func testPodman(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*pullTimeout)
	defer cancel()
	podman := privatePodman(t)
	out := mustRun(ctx, t, podman(append(podmanRun, "--network", "none", "--tls-verify=false",
		srv.Ref(imageCurl), "curl", "--version")...)...)
	if !regexp.MustCompile(`(?m)^curl \d+\.\d+\.\d+ `).MatchString(out) {
		t.Errorf("podman run curl --version printed:\n%s", out)
	}

	m1 := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	m2 := srv.manifest(ctx, t, imageCurlJq, "latest", mediaOCIManifest)
	_, fresh := splitLayers(m1, m2)
	mark := srv.Mark()
	mustRun(ctx, t, podman("pull", "--tls-verify=false", srv.Ref(imageCurlJq))...)
	wantFetched := append(slices.Clone(fresh), m2.Config.Digest.String())
	fetched := srv.blobsFetchedSince(t, mark, wantFetched)
	if !slices.Equal(sorted(fetched), sorted(wantFetched)) {
		t.Errorf("server sent blobs %v during podman's second pull, want the config and the new layers %v", sorted(fetched), sorted(wantFetched))
	}
}

// testConformance runs the OCI distribution-spec conformance suite in
// read-only mode against an image the server built, with the referrers
// API (OCI_API_REFERRER) on: its manifests as the subjects, the SBOM
// artifact manifests among the manifests pulled by digest. The suite panics
// after printing its summary when it writes results.yaml in read-only mode
// and then exits 2, so the summary is judged, not the exit status.
func testConformance(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
	defer cancel()
	docker := srv.manifest(ctx, t, imageCurl, "latest", mediaDockerManifest)
	oci := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	// The image indexes too (read-only data is fetched by digest).
	_, listResp := srv.index(ctx, t, imageCurl, "latest", mediaDockerList)
	_, indexResp := srv.index(ctx, t, imageCurl, "latest", mediaOCIIndex)
	list, index := listResp.header.Get("Docker-Content-Digest"), indexResp.header.Get("Docker-Content-Digest")
	blobs := []string{docker.Config.Digest.String()}
	if oci.Config.Digest != docker.Config.Digest {
		blobs = append(blobs, oci.Config.Digest.String())
	}
	blobs = append(blobs, docker.LayerDigests()...)
	// The SBOM artifact manifests are pulled by digest like the others.
	manifests := []string{docker.Digest.String(), oci.Digest.String()}
	for _, m := range []*testutil.Manifest{docker, oci} {
		var idx v1.IndexManifest
		r := srv.do(ctx, t, http.MethodGet, "/v2/"+imageCurl+"/referrers/"+m.Digest.String(), nil)
		if err := json.Unmarshal(r.body, &idx); err != nil || r.status != http.StatusOK || len(idx.Manifests) != 2 {
			t.Fatalf("referrers of %s: %d %s", m.Digest, r.status, r.body)
		}
		for _, d := range idx.Manifests {
			manifests = append(manifests, d.Digest.String())
		}
	}

	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, "oci-conformance")
	cmd.Dir = dir
	cmd.Env = withoutPrefix(os.Environ(), "OCI_")
	cmd.Env = append(cmd.Env,
		"OCI_REGISTRY="+srv.Addr,
		"OCI_TLS=disabled",
		"OCI_REPO1="+imageCurl,
		"OCI_REPO2="+imageCurl,
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"),
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_API_REFERRER=true",
		"OCI_RO_DATA_TAGS=latest",
		"OCI_RO_DATA_MANIFESTS="+strings.Join(append(manifests, list, index), " "),
		"OCI_RO_DATA_REFERRERS="+strings.Join([]string{docker.Digest.String(), oci.Digest.String()}, " "),
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
		t.Fatalf("oci-conformance (exit %v): %v\nstdout:\n%s\nstderr:\n%s", err, perr, stdout.String(), testutil.Tail(stderr.String(), 40))
	}
	t.Logf("oci-conformance: %s; passed %d, failed %d, errors %d, disabled %d (exit %v)", sum.status, sum.pass, sum.fail, sum.errors, sum.disabled, err)
	if sum.status != "Pass" || sum.fail != 0 || sum.errors != 0 || sum.pass == 0 {
		t.Errorf("conformance suite did not pass:\n%s", stdout.String())
	}
	// The pull tests ran and passed, for tag, digest and blobs.
	for _, test := range []string{"read-only/pull/manifest-by-tag", "read-only/pull/manifest-by-digest", "read-only/pull/blob-get", "read-only/head/manifest-head-by-tag", "read-only/head/blob-head", "read-only/referrers", "empty/referrers"} {
		if got := sum.results[test]; len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != "Pass" }) {
			t.Errorf("conformance test %s: %v, want Pass", test, got)
		}
	}
}
