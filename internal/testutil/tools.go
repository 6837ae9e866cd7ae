package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// installHints says how the project installs each tool its tests need.
var installHints = map[string]string{
	"nix":             ".ci/setup (apt-get install nix-bin)",
	"nix-build":       ".ci/setup (apt-get install nix-bin)",
	"nix-instantiate": ".ci/setup (apt-get install nix-bin)",
	"nix-store":       ".ci/setup (apt-get install nix-bin)",
	"docker":          ".ci/setup-clients (apt-get install docker.io)",
	"dockerd":         ".ci/setup-clients (apt-get install docker.io)",
	"podman":          ".ci/setup-clients",
	"skopeo":          ".ci/setup-clients",
	"runc":            ".ci/setup-clients",
	"crane":           ".ci/setup-clients",
	"oci-conformance": ".ci/setup-clients",
	"registry":        ".ci/setup-clients (distribution's registry, built from its Go module)",
	"wrk":             ".ci/setup-clients (apt-get install wrk)",
	"script":          "apt-get install bsdutils (Debian's util-linux script)",
	"pigz":            ".ci/setup-clients (apt-get install pigz)",
	"haproxy":         ".ci/setup-clients (apt-get install haproxy)",
}

// RequireTools fails the test unless every tool is installed: a program
// name is looked up in PATH, a path (with a slash) must be an executable
// file. "docker" also needs a Docker engine that answers at DOCKER_HOST
// (start the project's with `eval "$(.ci/dockerd start)"`), unless dockerd
// is among the tools too: a test that starts its own engine lists the
// daemon and needs only the client besides.
//
// A missing tool is a failure, never a skip: a test that cannot run has
// not passed. Only under -short (testing.Short) does RequireTools skip the
// test instead, as it then skips everything that runs external programs.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s; skipped with -short", strings.Join(tools, ", "))
	}
	engine, err := checkTools(t.Context(), tools...)
	if err != nil {
		t.Fatal(err)
	}
	if engine != "" {
		t.Logf("Docker engine %s at DOCKER_HOST=%q", engine, os.Getenv("DOCKER_HOST"))
	}
}

// checkTools returns an error naming every missing tool and how to install
// it, or saying that no Docker engine answers; engine is the version of the
// engine when one was asked.
func checkTools(ctx context.Context, tools ...string) (engine string, err error) {
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			m := tool
			if h := installHints[filepath.Base(tool)]; h != "" {
				m += " (install with " + h + ")"
			}
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("this test needs tools that are not installed: %s", strings.Join(missing, ", "))
	}
	needEngine := slices.Contains(tools, "docker") &&
		!slices.ContainsFunc(tools, func(tool string) bool { return filepath.Base(tool) == "dockerd" })
	if !needEngine {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("no Docker engine answers at DOCKER_HOST=%q: %v\n%s\nstart one with: eval \"$(.ci/dockerd start)\"", os.Getenv("DOCKER_HOST"), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
