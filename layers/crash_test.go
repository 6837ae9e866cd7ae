package layers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// Environment of the child process of TestCrashSafety.
const (
	crashChildEnv = "NIXERY_LAYERS_CRASH_CHILD" // store path to build
	crashRootEnv  = "NIXERY_LAYERS_CRASH_ROOT"
	crashBlobsEnv = "NIXERY_LAYERS_CRASH_BLOBS"
	crashCacheEnv = "NIXERY_LAYERS_CRASH_CACHE"
)

func TestMain(m *testing.M) {
	if p := os.Getenv(crashChildEnv); p != "" {
		crashChild(p)
		os.Exit(3) // crashChild should have been killed
	}
	os.Exit(m.Run())
}

// crashChild builds a layer on one worker until it is killed.
func crashChild(path string) {
	store, err := NewFSStore(os.Getenv(crashBlobsEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	a, err := NewAssembler(store, os.Getenv(crashCacheEnv), Options{Root: os.Getenv(crashRootEnv), Workers: 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, err = a.Layer(context.Background(), []string{path})
	fmt.Fprintln(os.Stderr, "child finished:", err)
}

// TestCrashSafety kills a process in the middle of writing a layer and checks
// that nothing it wrote is visible or reused: no blob, no member cache entry,
// no layer cache entry; and that a new Assembler on the same directories
// builds the right layer.
func TestCrashSafety(t *testing.T) {
	root := t.TempDir()
	path := testutil.StorePath("crash-1.0")
	dir := filepath.Join(root, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// About 32 MiB of host binaries: a few hundred milliseconds of work on
	// one core, seconds with -race.
	n := 0
	for _, src := range []string{"/usr/bin", "/usr/lib/x86_64-linux-gnu"} {
		es, _ := os.ReadDir(src)
		for _, e := range es {
			if n > 32<<20 || !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				continue
			}
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%04d-%s", n%9973, e.Name())), b, 0o755)
			n += len(b)
		}
	}
	if n < 16<<20 {
		t.Fatalf("only %d bytes of host files", n)
	}
	blobs, cache := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashRootEnv+"="+root, crashBlobsEnv+"="+blobs, crashCacheEnv+"="+cache)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the child has written part of the blob and of the member
	// cache entry, then kill it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		blobTmp := largest(filepath.Join(blobs, "tmp"))
		memberTmp := largest(filepath.Join(cache, "tmp"))
		if blobTmp > 256<<10 && memberTmp > 256<<10 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the child wrote nothing within a minute")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the child was not killed mid-write: %v", err)
	}
	// Nothing is visible.
	for _, d := range []string{filepath.Join(blobs, "blobs", "sha256"), filepath.Join(cache, "layers")} {
		if es, _ := os.ReadDir(d); len(es) != 0 {
			t.Errorf("%s holds %d entries after the crash", d, len(es))
		}
	}
	members, _ := filepath.Glob(filepath.Join(cache, "members", "*", "*"))
	if len(members) != 0 {
		t.Errorf("member cache entries after the crash: %q", members)
	}
	if largest(filepath.Join(blobs, "tmp")) == 0 {
		t.Error("no partial blob left in tmp: the kill did not happen mid-write")
	}

	// A restarted Assembler rebuilds the layer from scratch and gets the
	// same layer as a fresh cache.
	store, err := NewFSStore(blobs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAssembler(store, cache, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.Layer(context.Background(), []string{path})
	if err != nil {
		t.Fatal(err)
	}
	if a.compressed.Load() == 0 {
		t.Error("the rebuild compressed nothing: it reused something from the killed build")
	}
	fresh, _ := newTestAssembler(t, root, Options{})
	want, err := fresh.Layer(context.Background(), []string{path})
	if err != nil {
		t.Fatal(err)
	}
	if d != want {
		t.Errorf("rebuild after the crash: %+v, fresh build %+v", d, want)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(testutil.Gunzip(t, readBlob(t, store, d.Digest)))); got != d.DiffID.Hex {
		t.Errorf("rebuilt blob decompresses to sha256:%s, DiffID %s", got, d.DiffID)
	}
}

// largest returns the size of the largest file in dir.
func largest(dir string) int64 {
	var n int64
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if fi, err := e.Info(); err == nil && fi.Size() > n {
			n = fi.Size()
		}
	}
	return n
}
