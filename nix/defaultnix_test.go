package nix

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
)

// TestDefaultNixParses checks the repository's default.nix (the
// buildGoModule recipe for users with nixpkgs) with nix-instantiate
// --parse; nixpkgs itself is not available offline.
func TestDefaultNixParses(t *testing.T) {
	requireNix(t)
	out, err := exec.Command("nix-instantiate", "--parse", filepath.Join("..", "default.nix")).CombinedOutput()
	if err != nil {
		t.Fatalf("nix-instantiate --parse default.nix: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "buildGoModule") {
		t.Errorf("parsed default.nix does not mention buildGoModule:\n%s", out)
	}
}

// TestDefaultNixVendorHash recomputes the vendorHash with .ci/vendorhash
// (go mod vendor, then nix hash path) and compares it with default.nix.
func TestDefaultNixVendorHash(t *testing.T) {
	requireNix(t)
	testutil.RequireTools(t, "go") // go test puts its own go first in PATH
	data, err := os.ReadFile(filepath.Join("..", "default.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`vendorHash = "(sha256-[A-Za-z0-9+/=]+)";`).FindSubmatch(data)
	if m == nil {
		t.Fatal("default.nix has no vendorHash = \"sha256-...\"")
	}
	out, err := exec.Command(filepath.Join("..", ".ci", "vendorhash")).Output()
	if err != nil {
		t.Fatalf(".ci/vendorhash: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != string(m[1]) {
		t.Errorf("default.nix has vendorHash %s but the module vendors to %s: update default.nix (see .ci/vendorhash)", m[1], got)
	}
}
