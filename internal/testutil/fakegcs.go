package testutil

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FakeGCS is a GCS emulator (fake-gcs-server) started by [StartFakeGCS] on
// 127.0.0.1, with a bucket.
type FakeGCS struct {
	// Host is the emulator's host:port, what STORAGE_EMULATOR_HOST says.
	Host string
	// Bucket is a bucket that exists.
	Bucket string
	// Dir holds the emulator's objects and log.
	Dir string
}

// StartFakeGCS starts fake-gcs-server with .ci/fake-gcs (which builds it
// the first time) and stops it when t ends. It fails t, never skips, when
// the emulator cannot start (it skips only with -short, as
// [StartSeaweedFS] and [RequireTools] do).
func StartFakeGCS(t testing.TB) *FakeGCS {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a GCS emulator; skipped with -short")
	}
	mod, err := ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(mod, ".ci", "fake-gcs")
	g := &FakeGCS{Dir: filepath.Join(t.TempDir(), "fake-gcs")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "start", g.Dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Cleanup(func() { exec.Command(script, "stop", g.Dir).Run() })
	if err != nil {
		t.Fatalf("testutil: .ci/fake-gcs start: %v\n%s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			env[k] = v
		}
	}
	g.Host, g.Bucket = env["STORAGE_EMULATOR_HOST"], env["GCS_BUCKET"]
	if g.Host == "" || g.Bucket == "" {
		t.Fatalf("testutil: .ci/fake-gcs start printed no host:\n%s\n%s", out, stderr.String())
	}
	return g
}

// Endpoint is the emulator's URL, http://host:port.
func (g *FakeGCS) Endpoint() string { return "http://" + g.Host }

// Env returns the environment that points nixery at the emulator:
// NIXERY_STORAGE_BACKEND=gcs, STORAGE_EMULATOR_HOST and GCS_BUCKET.
func (g *FakeGCS) Env() []string {
	return []string{
		"NIXERY_STORAGE_BACKEND=gcs",
		"STORAGE_EMULATOR_HOST=" + g.Host,
		"GCS_BUCKET=" + g.Bucket,
	}
}
