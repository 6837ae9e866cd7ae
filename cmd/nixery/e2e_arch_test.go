package main

// The multi-architecture scenarios of the end-to-end test: image indexes of
// linux/amd64 and linux/arm64 (variant v8), and arm64 images that run under
// the emulator .ci/setup registers with binfmt_misc, pulled by Docker,
// podman, containerd's ctr, crane and skopeo.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// Media types of image indexes.
const (
	mediaDockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaOCIIndex   = "application/vnd.oci.image.index.v1+json"
)

// index fetches the index of name at reference in the media type accept
// and checks its headers.
func (s *server) index(ctx context.Context, t *testing.T, name, reference, accept string) (*v1.IndexManifest, *response) {
	t.Helper()
	resp := s.do(ctx, t, http.MethodGet, "/v2/"+name+"/manifests/"+reference, http.Header{"Accept": {accept}})
	if resp.status != http.StatusOK {
		t.Fatalf("GET %s/manifests/%s with Accept %s: status %d: %.300s", name, reference, accept, resp.status, resp.body)
	}
	if got := resp.header.Get("Content-Type"); got != accept {
		t.Fatalf("GET %s/manifests/%s with Accept %s: Content-Type %q", name, reference, accept, got)
	}
	if got := resp.header.Get("Docker-Content-Digest"); got != sha256Digest(resp.body) {
		t.Errorf("Docker-Content-Digest %q, body digest %s", got, sha256Digest(resp.body))
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(resp.body))
	if err != nil {
		t.Fatal(err)
	}
	return idx, resp
}

// testMultiArch checks the index of imageCurl over HTTP and with every
// client, and runs its arm64 image.
func testMultiArch(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()

	// Over HTTP: both formats, their members, by digest, HEAD.
	docker := srv.manifest(ctx, t, imageCurl, "latest", mediaDockerManifest)
	oci := srv.manifest(ctx, t, imageCurl, "latest", mediaOCIManifest)
	var armDocker v1.Hash
	for _, tc := range []struct {
		accept, member string
		amd64          v1.Hash
	}{
		{mediaDockerList, mediaDockerManifest, docker.Digest},
		{mediaOCIIndex, mediaOCIManifest, oci.Digest},
	} {
		idx, resp := srv.index(ctx, t, imageCurl, "latest", tc.accept)
		if len(idx.Manifests) != 2 {
			t.Fatalf("%s has %d manifests, want 2", tc.accept, len(idx.Manifests))
		}
		amd, arm := idx.Manifests[0], idx.Manifests[1]
		if amd.Platform == nil || amd.Platform.Architecture != "amd64" || amd.Platform.OS != "linux" || amd.Digest != tc.amd64 {
			t.Errorf("%s: first member %+v %v, want linux/amd64 %s", tc.accept, amd.Platform, amd.Digest, tc.amd64)
		}
		if arm.Platform == nil || arm.Platform.Architecture != "arm64" || arm.Platform.Variant != "v8" || arm.Platform.OS != "linux" {
			t.Errorf("%s: second member %+v, want linux/arm64/v8", tc.accept, arm.Platform)
		}
		for _, m := range idx.Manifests {
			if string(m.MediaType) != tc.member {
				t.Errorf("%s: member of type %s, want %s", tc.accept, m.MediaType, tc.member)
			}
		}
		if tc.accept == mediaDockerList {
			armDocker = arm.Digest
		}
		digest := resp.header.Get("Docker-Content-Digest")
		byDigest := srv.do(ctx, t, http.MethodGet, "/v2/"+imageCurl+"/manifests/"+digest, nil)
		if byDigest.status != http.StatusOK || !bytes.Equal(byDigest.body, resp.body) || byDigest.header.Get("Content-Type") != tc.accept {
			t.Errorf("GET the index %s by digest: status %d, Content-Type %q, same bytes %v", digest, byDigest.status, byDigest.header.Get("Content-Type"), bytes.Equal(byDigest.body, resp.body))
		}
		head := srv.do(ctx, t, http.MethodHead, "/v2/"+imageCurl+"/manifests/"+digest, nil)
		if head.status != http.StatusOK || head.header.Get("Docker-Content-Digest") != digest || len(head.body) != 0 {
			t.Errorf("HEAD the index %s: status %d, digest %q", digest, head.status, head.header.Get("Docker-Content-Digest"))
		}
		armM := srv.manifest(ctx, t, imageCurl, arm.Digest.String(), tc.member)
		cfg := srv.config(ctx, t, imageCurl, armM)
		if cfg.Architecture != "arm64" || cfg.Variant != "v8" || cfg.OS != "linux" {
			t.Errorf("the arm64 member's config says %s/%s/%s", cfg.OS, cfg.Architecture, cfg.Variant)
		}
	}
	// A client that accepts only manifests gets amd64's (above); arm64/...
	// is arm64's image alone, even for a client that accepts indexes.
	armName := "arm64/" + imageCurl
	resp := srv.do(ctx, t, http.MethodGet, "/v2/"+armName+"/manifests/latest", http.Header{"Accept": {mediaOCIIndex + ", " + mediaDockerManifest}})
	if resp.status != http.StatusOK || resp.header.Get("Content-Type") != mediaDockerManifest || resp.header.Get("Docker-Content-Digest") != armDocker.String() {
		t.Errorf("GET %s accepting an index: status %d, Content-Type %q, digest %q; want the arm64 member %s", armName, resp.status, resp.header.Get("Content-Type"), resp.header.Get("Docker-Content-Digest"), armDocker)
	}

	ref := localhostRef(srv.Addr, imageCurl)

	t.Run("Docker", func(t *testing.T) {
		removeStaleImages(ctx, t, imageCurl)
		t.Cleanup(func() { dockerRemove(t, ref) })
		out := mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", "--platform", "linux/arm64", ref, "uname", "-m")
		if strings.TrimSpace(lastLine(out)) != "aarch64" {
			t.Errorf("docker run --platform linux/arm64 uname -m printed:\n%s", out)
		}
		out = mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", "--platform", "linux/arm64", ref, "curl", "--version")
		if !strings.Contains(out, "aarch64") || !strings.HasPrefix(firstLine(out), "curl ") {
			t.Errorf("arm64 curl --version printed:\n%s", out)
		}
		t.Logf("arm64 curl --version: %s", firstLine(out))
		// The arm64 image loses its tag to amd64's: removed by ID.
		armID := strings.TrimSpace(mustRun(ctx, t, "docker", "image", "inspect", "--format", "{{.Id}}", ref))
		t.Cleanup(func() { dockerRemove(t, armID) })
		mustRun(ctx, t, "docker", "pull", ref)
		out = mustRun(ctx, t, "docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", ref)
		if strings.TrimSpace(out) != "linux/amd64" {
			t.Errorf("docker pull without a platform gave %s, want linux/amd64", out)
		}
	})

	t.Run("Podman", func(t *testing.T) {
		base := t.TempDir()
		podman := []string{"podman", "--root", filepath.Join(base, "root"), "--runroot", filepath.Join(base, "runroot"),
			"--tmpdir", filepath.Join(base, "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			defer cancel()
			runCmd(ctx, append(podman, "rmi", "--all", "--force")...)
		})
		out := mustRun(ctx, t, append(podman, "run", "--rm", "--runtime", "runc", "--arch", "arm64",
			"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
			"--network", "none", "--tls-verify=false", srv.Ref(imageCurl), "uname", "-m")...)
		if strings.TrimSpace(lastLine(out)) != "aarch64" {
			t.Errorf("podman run --arch arm64 uname -m printed:\n%s", out)
		}
	})

	t.Run("Containerd", func(t *testing.T) {
		// The containerd of the Docker engine (.ci/dockerd), in a namespace
		// of the test's own.
		host, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://")
		if !ok {
			t.Fatalf("DOCKER_HOST %q is not a unix socket of .ci/dockerd", os.Getenv("DOCKER_HOST"))
		}
		sock := filepath.Join(filepath.Dir(host), "docker-exec", "containerd", "containerd.sock")
		ctr := []string{"ctr", "--address", sock, "--namespace", "nixery-e2e"}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			defer cancel()
			runCmd(ctx, append(ctr, "images", "rm", srv.Ref(imageCurl)+":latest")...)
		})
		out := mustRun(ctx, t, append(ctr, "images", "pull", "--plain-http", "--platform", "linux/arm64", srv.Ref(imageCurl)+":latest")...)
		if !strings.Contains(out, "unpacking linux/arm64") {
			t.Errorf("ctr images pull --platform linux/arm64:\n%s", testutil.Tail(out, 10))
		}
		// The image is the Docker manifest list (what ctr prefers), and
		// the arm64 member is in the namespace's content.
		_, list := srv.index(ctx, t, imageCurl, "latest", mediaDockerList)
		out = mustRun(ctx, t, append(ctr, "images", "ls")...)
		if !strings.Contains(out, list.header.Get("Docker-Content-Digest")) || !strings.Contains(out, "linux/arm64/v8") {
			t.Errorf("ctr images ls does not show the index %s with linux/arm64/v8:\n%s", list.header.Get("Docker-Content-Digest"), out)
		}
		manifest := mustRun(ctx, t, append(ctr, "content", "get", armDocker.String())...)
		if sha256Digest([]byte(manifest)) != armDocker.String() {
			t.Errorf("ctr content get %s: other bytes", armDocker)
		}
	})

	t.Run("Crane", func(t *testing.T) {
		out := mustRun(ctx, t, "crane", "manifest", srv.Ref(imageCurl))
		idx, err := v1.ParseIndexManifest(strings.NewReader(out))
		if err != nil || len(idx.Manifests) != 2 {
			t.Fatalf("crane manifest: %v\n%s", err, out)
		}
		for _, platform := range []string{"", "linux/amd64", "linux/arm64"} {
			args := []string{"crane", "validate", "--remote", srv.Ref(imageCurl)}
			if platform != "" {
				args = append(args, "--platform", platform)
			}
			if out := mustRun(ctx, t, args...); !strings.Contains(out, "PASS") || strings.Contains(out, "FAIL") {
				t.Errorf("%s:\n%s", strings.Join(args, " "), out)
			}
		}
		out = mustRun(ctx, t, "crane", "config", "--platform", "linux/arm64", srv.Ref(imageCurl))
		if cfg, err := v1.ParseConfigFile(strings.NewReader(out)); err != nil || cfg.Architecture != "arm64" {
			t.Errorf("crane config --platform linux/arm64: %v %s", err, out)
		}
	})

	t.Run("Skopeo", func(t *testing.T) {
		out := mustRun(ctx, t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+srv.Ref(imageCurl))
		var idx struct {
			MediaType string
			Manifests []struct {
				Platform struct{ Architecture, Variant string }
			}
		}
		if err := json.Unmarshal([]byte(out), &idx); err != nil || idx.MediaType != mediaDockerList || len(idx.Manifests) != 2 || idx.Manifests[1].Platform.Architecture != "arm64" {
			t.Errorf("skopeo inspect --raw: %v\n%s", err, out)
		}
		out = mustRun(ctx, t, "skopeo", "inspect", "--override-arch", "arm64", "--tls-verify=false", "docker://"+srv.Ref(imageCurl))
		var info struct{ Architecture, Os string }
		if err := json.Unmarshal([]byte(out), &info); err != nil || info.Architecture != "arm64" || info.Os != "linux" {
			t.Errorf("skopeo inspect --override-arch arm64: %v\n%s", err, out)
		}
	})
}

// requireEmulator fails the test unless binfmt_misc runs aarch64 programs
// with the F flag, which containers need (.ci/setup-arm64 registers
// qemu-user-static's handler).
func requireEmulator(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil || !strings.HasPrefix(string(data), "enabled") {
		t.Fatalf("no aarch64 emulator registered with binfmt_misc (%v); run .ci/setup", err)
	}
	_, flags, _ := strings.Cut(string(data), "flags: ")
	if flags, _, _ = strings.Cut(flags, "\n"); !strings.Contains(flags, "F") {
		t.Fatalf("the aarch64 emulator is registered without the F flag (%q): containers cannot run it", flags)
	}
}
