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
	MountTmpfs(t, dir, size)
	return dir
}

// MountTmpfs is [Tmpfs] on the existing directory dir. A failed unmount at
// the cleanup fails the test.
func MountTmpfs(t testing.TB, dir string, size int) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dk", size>>10), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d KiB tmpfs on %s (the test needs root): %v: %s", size>>10, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}
