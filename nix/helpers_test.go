package nix

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// requireNix fails the test when Nix is not installed; only -short skips.
func requireNix(t testing.TB) {
	t.Helper()
	testutil.RequireTools(t, "nix-instantiate", "nix-store", "nix")
}

// testLogger writes the builder's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	s := string(p)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	w.t.Log(strings.TrimRight(s, "\n"))
	return len(p), nil
}

var (
	bundledOnce sync.Once
	bundledSrc  *BundledSource
	bundledErr  error
)

// testBundled returns the bundled source, extracted once per test binary
// into a temporary directory.
func testBundled(t testing.TB) *BundledSource {
	t.Helper()
	bundledOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nixery-nix-test-")
		if err != nil {
			bundledErr = err
			return
		}
		bundledSrc, bundledErr = NewBundledSource(dir)
	})
	if bundledErr != nil {
		t.Fatal(bundledErr)
	}
	return bundledSrc
}

// countingBuilder returns a builder whose Nix invocations are counted.
func countingBuilder(t testing.TB, src Source, opts Options) (*Builder, *atomic.Int64) {
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	b := NewBuilder(src, opts)
	var n atomic.Int64
	real := b.run
	b.run = func(ctx context.Context, c command) (output, error) {
		n.Add(1)
		return real(ctx, c)
	}
	return b, &n
}

// testSet copies testdata/<name> into a temporary directory, replacing
// each key of repl by its value, and returns the directory.
func testSet(t testing.TB, name string, repl map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("testdata", name)
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		for k, v := range repl {
			s = strings.ReplaceAll(s, k, v)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// nonce returns a string unique to this test run.
func nonce(t testing.TB) string {
	return t.Name() + "-" + time.Now().Format(time.RFC3339Nano)
}
