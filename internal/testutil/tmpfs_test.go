package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTmpfs: the directory is a disk of the size asked for, gone at the
// cleanup.
func TestTmpfs(t *testing.T) {
	var dir string
	t.Run("mounted", func(t *testing.T) {
		dir = Tmpfs(t, 1<<20)
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil || st.Blocks*uint64(st.Bsize) != 1<<20 {
			t.Fatalf("statfs %s: %d blocks of %d bytes, %v; want 1 MiB", dir, st.Blocks, st.Bsize, err)
		}
		err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 2<<20), 0o644)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("writing 2 MiB to a 1 MiB tmpfs: %v, want ENOSPC", err)
		}
	})
	if b, err := os.ReadFile("/proc/self/mounts"); err != nil || strings.Contains(string(b), " "+dir+" ") {
		t.Errorf("%s still mounted after the cleanup (%v)", dir, err)
	}
}
