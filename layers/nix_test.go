package layers

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
)

// nixConfig is the configuration Nix needs on a machine without a daemon or
// build users (see .ci/setup).
const nixConfig = "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command"

// TestRealNixStore builds testdata/closure.nix with nix-build and checks a
// layer of its runtime closure, read from the real /nix/store, against the
// store: the same files, contents, modes and symlinks.
func TestRealNixStore(t *testing.T) {
	testutil.RequireTools(t, "nix-build", "nix-store")
	env := os.Environ()
	if os.Getenv("NIX_CONFIG") == "" {
		env = append(env, "NIX_CONFIG="+nixConfig)
	}
	cmd := exec.Command("nix-build", "--no-out-link", "testdata/closure.nix")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-build: %v\n%s", err, exitStderr(err))
	}
	top := strings.TrimSpace(string(out))
	cmd = exec.Command("nix-store", "-qR", top)
	cmd.Env = env
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("nix-store -qR: %v\n%s", err, exitStderr(err))
	}
	paths := strings.Fields(string(out))
	if len(paths) != 2 {
		t.Fatalf("closure of %s: %q, want 2 paths", top, paths)
	}

	ctx := context.Background()
	a, store := newTestAssembler(t, "/", Options{})
	d, err := a.Layer(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	entries := testutil.ReadLayer(t, readBlob(t, store, d.Digest))
	diffLines(t, "layer of the real store", describeTar(t, entries), expectEntries(t, "/", paths))
	// The store's own permission bits, not just the normalised ones.
	kinds := map[byte]int{}
	for _, e := range entries[2:] {
		fi, err := os.Lstat("/" + strings.TrimSuffix(e.Header.Name, "/"))
		if err != nil {
			t.Fatal(err)
		}
		kinds[e.Header.Typeflag]++
		if got, want := e.Header.Mode, int64(fi.Mode().Perm()); got != want {
			t.Errorf("%s: mode %o, the store has %o", e.Header.Name, got, want)
		}
	}
	if kinds[tar.TypeReg] < 4 || kinds[tar.TypeSymlink] < 2 || kinds[tar.TypeDir] < 4 {
		t.Errorf("entry kinds %v: the closure should have files, symlinks and directories", kinds)
	}
	// Another cache, the paths in another order: the same layer.
	b, _ := newTestAssembler(t, "/", Options{})
	if d2, err := b.Layer(ctx, []string{paths[1], paths[0]}); err != nil || d2 != d {
		t.Errorf("second build: %+v, %v; first %+v", d2, err, d)
	}
}

func exitStderr(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}
