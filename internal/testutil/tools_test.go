package testutil

import (
	"flag"
	"strings"
	"testing"
)

func TestRequireToolsPresent(t *testing.T) {
	if testing.Short() {
		t.Skip("RequireTools skips under -short; TestRequireToolsShort checks that")
	}
	r := run(t, func(tb testing.TB) { RequireTools(tb, "sh", "/bin/sh") })
	if r.fatal != "" || r.skipped != "" {
		t.Errorf("sh is installed, yet RequireTools failed (%q) or skipped (%q)", r.fatal, r.skipped)
	}
}

func TestRequireToolsMissing(t *testing.T) {
	if testing.Short() {
		t.Skip("RequireTools skips under -short; TestRequireToolsShort checks that")
	}
	r := run(t, func(tb testing.TB) { RequireTools(tb, "sh", "no-such-tool-x", "/no/such/path", "wrk-missing") })
	for _, want := range []string{"no-such-tool-x", "/no/such/path", "wrk-missing"} {
		if !strings.Contains(r.fatal, want) {
			t.Errorf("failure %q does not name %s", r.fatal, want)
		}
	}
	if strings.Contains(r.fatal, "sh,") {
		t.Errorf("failure %q names sh, which is installed", r.fatal)
	}
	if r.skipped != "" {
		t.Errorf("a missing tool skipped the test: %q", r.skipped)
	}
	r = run(t, func(tb testing.TB) { RequireTools(tb, "/no/such/oci-conformance") })
	if !strings.Contains(r.fatal, ".ci/setup-clients") {
		t.Errorf("failure %q does not say how to install oci-conformance", r.fatal)
	}
}

func TestRequireToolsShort(t *testing.T) {
	short := flag.Lookup("test.short").Value
	was := short.String()
	short.Set("true")
	defer short.Set(was)
	r := run(t, func(tb testing.TB) { RequireTools(tb, "no-such-tool-x") })
	if r.skipped == "" || r.fatal != "" {
		t.Errorf("under -short: skipped %q, fatal %q; want a skip", r.skipped, r.fatal)
	}
}

// TestRequireToolsDockerEngine: "docker" needs an engine at DOCKER_HOST,
// unless dockerd is required too.
func TestRequireToolsDockerEngine(t *testing.T) {
	RequireTools(t, "docker", "/usr/sbin/dockerd") // the binaries, no engine
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no.sock")
	r := run(t, func(tb testing.TB) { RequireTools(tb, "docker") })
	if !strings.Contains(r.fatal, "no Docker engine answers") || !strings.Contains(r.fatal, "no.sock") {
		t.Errorf("docker without an engine: %q", r.fatal)
	}
	r = run(t, func(tb testing.TB) { RequireTools(tb, "docker", "dockerd") })
	if r.fatal != "" {
		t.Errorf("docker with dockerd asked for an engine: %q", r.fatal)
	}
}
