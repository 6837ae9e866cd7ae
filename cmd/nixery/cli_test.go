package main

// End-to-end tests of `nixery build` and `nixery push`: the binary builds
// with real Nix into a storage directory; the Docker engine loads the
// archive and runs it, skopeo reads the OCI layout, distribution's registry
// (started here on loopback, with htpasswd authentication) receives the
// push with the credentials of a Docker configuration, and Docker pulls it
// back and runs it. Then `nixery serve` on the same storage serves the
// image from its cache, with the digest the CLI printed, and answers the
// names the CLI refused with the same messages.
//
//	eval "$(.ci/dockerd start)" && go test -race -run TestCLI -v ./cmd/nixery

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// The registry's test user. The hash is bcrypt's of the password, the only
// kind distribution's htpasswd accepts, at the lowest cost (4): the
// registry checks it on every request.
const (
	registryUser     = "nixery"
	registryPassword = "nixery-test"
	registryHash     = "$2b$04$jv/4tt4arIn/hXlSjz7EQeQG4dY0gx5ARPBhQOfWZsFreHBb4JnVi"
)

// cliRun is one run of the nixery binary.
type cliRun struct {
	stdout, stderr string
	err            error
}

// cli runs the nixery binary with the storage directory storage.
type cli struct {
	bin, storage string
	env          []string // added to the environment
}

func (c *cli) run(ctx context.Context, args ...string) cliRun {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	env := withoutPrefix(os.Environ(), "NIXERY_", "PORT=", "STORAGE_PATH=", "NIX_TIMEOUT=", "NIX_POPULARITY_URL=", "DOCKER_CONFIG=")
	cmd.Env = append(append(env, "STORAGE_PATH="+c.storage, "NIX_TIMEOUT=600"), c.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return cliRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// must fails the test unless the run succeeded.
func (r cliRun) must(t *testing.T, what string) cliRun {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", what, r.err, r.stdout, testutil.Tail(r.stderr, 40))
	}
	return r
}

// failed checks that the run exited non-zero, with a message naming want.
func (r cliRun) failed(t *testing.T, what string, want ...string) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("%s: exit %v, want a non-zero exit status\nstderr:\n%s", what, r.err, r.stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("%s: stderr does not say %q:\n%s", what, w, r.stderr)
		}
	}
}

// printedDigest is the digest a build or push printed last on stdout.
var printedDigest = regexp.MustCompile(`(sha256:[0-9a-f]{64})\s*$`)

func digestOfRun(t *testing.T, r cliRun) string {
	t.Helper()
	m := printedDigest.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("stdout %q ends in no digest", r.stdout)
	}
	return m[1]
}

func TestCLI(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store", "docker", "skopeo", "registry", "script")
	dir := t.TempDir()
	c := &cli{bin: testutil.NixeryBinary(t), storage: filepath.Join(dir, "storage")}
	refused := map[string]string{} // name -> the CLI's stderr
	var many []string              // more components than an image may have
	for i := range 65 {
		many = append(many, "a"+strconv.Itoa(i))
	}
	tooMany := strings.Join(many, "/")

	t.Run("Errors", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
		defer cancel()
		out := filepath.Join(dir, "never.tar")
		for _, name := range []string{"hello/doesnotexist/alsomissing", "hello/Not;A;Name", tooMany, "arm64/hello"} {
			args := []string{"build", "-progress", "plain", "-o", out}
			if name == "arm64/hello" {
				args = append(args, "-system", "x86_64-linux")
			}
			r := c.run(ctx, append(args, name)...)
			switch name {
			case "hello/doesnotexist/alsomissing":
				r.failed(t, name, "doesnotexist", "alsomissing")
				if strings.Contains(r.stderr, "hello,") || strings.Contains(r.stderr, ": hello") {
					t.Errorf("%s: the message names hello, which exists:\n%s", name, r.stderr)
				}
			case "hello/Not;A;Name":
				r.failed(t, name, `"Not;A;Name"`, "not allowed")
			case tooMany:
				r.failed(t, "65 packages", "65 components, more than the limit of 64")
			case "arm64/hello":
				r.failed(t, name, "aarch64-linux", "x86_64-linux")
			}
			refused[name] = r.stderr
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s: %s exists after a failed build (%v)", name, out, err)
			}
		}
		// Usage errors, before any build.
		c.run(ctx, "build", "hello").failed(t, "build without -o", "-o PATH is required")
		c.run(ctx, "build", "-o", out, "-format", "zip", "hello").failed(t, "build -format zip", `-format "zip"`)
		c.run(ctx, "build", "-o", out, "-system", "riscv64-linux", "hello").failed(t, "build -system riscv64-linux", `-system "riscv64-linux"`)
		c.run(ctx, "push", "hello").failed(t, "push without a reference", "want an image name and a reference")
	})

	var archiveDigest string
	t.Run("DockerArchive", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
		defer cancel()
		out := filepath.Join(dir, "hello.tar")
		start := time.Now()
		r := c.run(ctx, "build", "-o", out, "hello").must(t, "nixery build hello")
		t.Logf("cold build and export: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), r.stderr)
		archiveDigest = digestOfRun(t, r)
		// Not a terminal: plain lines, one per phase, then the bytes.
		for _, want := range []string{"evaluating hello", "realising the store paths", "grouping the closure into layers", "building layers", "writing the manifests", "hello built: ", "writing " + out} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("progress does not say %q:\n%s", want, r.stderr)
			}
		}
		dockerRemove(t, "hello:latest")
		t.Cleanup(func() { dockerRemove(t, "hello:latest") })
		load := mustRun(ctx, t, "docker", "load", "-i", out)
		if !strings.Contains(load, "Loaded image: hello:latest") {
			t.Errorf("docker load: %q, want the image tagged hello:latest", load)
		}
		run := mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", "hello:latest", "hello")
		if strings.TrimSpace(run) != "Hello, world!" {
			t.Errorf("docker run hello:latest hello: %q", run)
		}

		// Again: the image is in the cache, Nix does not run.
		r = c.run(ctx, "build", "-o", out, "-tag", "nixery-cli-test/hi:v1", "hello").must(t, "nixery build hello again")
		if d := digestOfRun(t, r); d != archiveDigest {
			t.Errorf("second build printed %s, first %s", d, archiveDigest)
		}
		if !strings.Contains(r.stderr, "hello in the cache") {
			t.Errorf("second build does not say the image was in the cache:\n%s", r.stderr)
		}
		t.Cleanup(func() { dockerRemove(t, "nixery-cli-test/hi:v1") })
		if load := mustRun(ctx, t, "docker", "load", "-i", out); !strings.Contains(load, "Loaded image: nixery-cli-test/hi:v1") {
			t.Errorf("docker load of the -tag archive: %q", load)
		}
	})

	t.Run("Terminal", func(t *testing.T) {
		// On a terminal (script(1) gives the command a pty of 100x40),
		// -progress auto draws bars: a tick per phase, a byte bar (cursor
		// movements only if it lasts past one refresh), no plain lines.
		ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
		defer cancel()
		out := filepath.Join(dir, "tty.tar")
		r := c.run(ctx, "build", "-o", out, "hello") // warm: the cache is shared
		r.must(t, "build hello")
		shell := fmt.Sprintf("stty cols 100 rows 40 && exec %s build -o %s hello", c.bin, out)
		cmd := exec.CommandContext(ctx, "script", "-qfec", shell, "/dev/null")
		cmd.Env = append(withoutPrefix(os.Environ(), "NIXERY_", "STORAGE_PATH="), "STORAGE_PATH="+c.storage)
		cmd.WaitDelay = 5 * time.Second
		tty, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("script: %v\n%s", err, tty)
		}
		for _, want := range []string{"✓ evaluating hello (", "✓ hello in the cache: ", " layers, ", "writing " + out, "[=====", " MB done"} {
			if !bytes.Contains(tty, []byte(want)) {
				t.Errorf("the terminal does not show %q:\n%q", want, tty)
			}
		}
		if bytes.Contains(tty, []byte("nixery: [")) {
			t.Errorf("plain progress lines on a terminal:\n%q", tty)
		}
	})

	t.Run("OCILayout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
		defer cancel()
		out := filepath.Join(dir, "oci")
		r := c.run(ctx, "build", "-format", "oci-layout", "-o", out, "shell/hello").must(t, "nixery build -format oci-layout shell/hello")
		ociDigest := digestOfRun(t, r)
		var info struct {
			Digest string
			Layers []string
			Os     string
		}
		raw := mustRun(ctx, t, "skopeo", "inspect", "oci:"+out+":latest")
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			t.Fatalf("skopeo inspect: %v\n%s", err, raw)
		}
		if info.Digest != ociDigest || info.Os != "linux" || len(info.Layers) < 2 {
			t.Errorf("skopeo inspect: digest %s, os %q, %d layers; want %s, linux, and layers", info.Digest, info.Os, len(info.Layers), ociDigest)
		}
		manifest := mustRun(ctx, t, "skopeo", "inspect", "--raw", "oci:"+out)
		if !strings.Contains(manifest, mediaOCIManifest) || strings.Contains(manifest, "docker") {
			t.Errorf("the layout's manifest is not OCI's:\n%s", manifest)
		}
		// A second image goes into the same layout under its own name.
		c.run(ctx, "build", "-format", "oci-layout", "-tag", "plain", "-o", out, "hello").must(t, "second image into the layout")
		mustRun(ctx, t, "skopeo", "inspect", "oci:"+out+":plain")
		mustRun(ctx, t, "skopeo", "inspect", "oci:"+out+":latest")
	})

	t.Run("Push", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
		defer cancel()
		reg := startRegistry(t, filepath.Join(dir, "registry"))
		ref := reg + "/cli/hello:v1"
		// No credentials: the registry's refusal, and a non-zero exit.
		c.run(ctx, "push", "-progress", "plain", "hello", ref).failed(t, "push without credentials", "401", "docker login "+reg)

		cfg := dockerConfig(t, filepath.Join(dir, "docker-config"), reg)
		withAuth := *c
		withAuth.env = []string{"DOCKER_CONFIG=" + cfg}
		start := time.Now()
		r := withAuth.run(ctx, "push", "-progress", "plain", "hello", ref).must(t, "nixery push hello "+ref)
		t.Logf("push: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), r.stderr)
		if d := digestOfRun(t, r); d != archiveDigest {
			t.Errorf("pushed %s, the archive's image is %s", d, archiveDigest)
		}
		if !strings.HasPrefix(r.stdout, reg+"/cli/hello@sha256:") {
			t.Errorf("stdout %q, want %s/cli/hello@DIGEST", r.stdout, reg)
		}
		if !strings.Contains(r.stderr, "pushing "+ref) {
			t.Errorf("progress does not show the push:\n%s", r.stderr)
		}

		t.Cleanup(func() { dockerRemove(t, ref) })
		dockerRemove(t, ref)
		mustRun(ctx, t, "docker", "--config", cfg, "pull", ref)
		run := mustRun(ctx, t, "docker", "run", "--rm", "--network", "none", ref, "hello")
		if strings.TrimSpace(run) != "Hello, world!" {
			t.Errorf("docker run %s hello: %q", ref, run)
		}
		digests := mustRun(ctx, t, "docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
		if !strings.Contains(digests, archiveDigest) {
			t.Errorf("docker has %s with digests %s, want %s", ref, digests, archiveDigest)
		}
	})

	t.Run("ServerSharesTheCache", func(t *testing.T) {
		if archiveDigest == "" {
			t.Skip("the build failed")
		}
		srv := &server{testutil.ServeNixery(t, testutil.NixeryOptions{Dir: dir})}
		ctx, cancel := context.WithTimeout(t.Context(), pullTimeout)
		defer cancel()
		mark := srv.Mark()
		m := srv.manifest(ctx, t, "hello", "latest", mediaDockerManifest)
		if m.Digest.String() != archiveDigest {
			t.Errorf("the server serves hello as %s, the CLI built %s", m.Digest, archiveDigest)
		}
		if n := srv.nixRunsSince(mark); n != 0 {
			t.Errorf("the server ran Nix %d times for an image the CLI built", n)
		}
		// The CLI's errors carry the server's messages. (The server has no
		// -system, and refuses a name with ';' by the URL grammar of
		// repository names, before it means packages: the CLI has no URL.)
		for name, stderr := range refused {
			if name == "arm64/hello" || strings.Contains(name, ";") {
				continue
			}
			resp := srv.do(ctx, t, http.MethodGet, "/v2/"+name+"/manifests/latest", nil)
			if resp.status == http.StatusOK {
				t.Errorf("GET %s: 200", name)
				continue
			}
			e := resp.registryError(t)
			if e.Message == "" || !strings.Contains(stderr, e.Message) {
				t.Errorf("%s: the server says %s %q; the CLI said:\n%s", name, e.Code, e.Message, stderr)
			}
		}
	})
}

// startRegistry runs distribution's registry on a free port of 127.0.0.1
// with its storage in dir and htpasswd authentication, and returns its
// host:port once it answers.
func startRegistry(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(registryUser+":"+registryHash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
auth:
  htpasswd:
    realm: nixery-test
    path: %s
`, filepath.Join(dir, "data"), addr, htpasswd)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("registry", "serve", cfgPath)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("registry: GET /v2/ without credentials: %d, want 401", resp.StatusCode)
			}
			return addr
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("registry exited: %v\n%s", err, testutil.Tail(string(log), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry at %s does not answer: %v", addr, err)
		}
	}
}

// dockerConfig writes a Docker configuration directory with the test
// user's credentials for registry, as `docker login` leaves them.
func dockerConfig(t *testing.T, dir, registry string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(registryUser + ":" + registryPassword))
	body, err := json.Marshal(map[string]any{"auths": map[string]any{registry: map[string]string{"auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
