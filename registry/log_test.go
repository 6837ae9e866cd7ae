package registry

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func filepathGlob(p string) ([]string, error) { return filepath.Glob(p) }

func writeFile(t testing.TB, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
