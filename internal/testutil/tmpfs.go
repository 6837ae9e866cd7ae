package testutil

import (
	"fmt"
	"os/exec"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes (rounded down to KiB) on a new
// temporary directory, unmounted at the test's cleanup, and returns the
// directory: a small disk to fill. It needs root; without it the test
// fails.
func Tmpfs(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dk", size>>10), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d KiB tmpfs (the test needs root): %v: %s", size>>10, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}
