package storage

import (
	"context"
	"log/slog"
	"os"
	"testing"
)

func TestTmpFull(t *testing.T) {
	if os.Getenv("TMPFULL") == "" {
		t.Skip()
	}
	res, err := Run(context.Background(), Options{Limit: 500_000_000, WouldWrite: 2_000_000_000, Recent: 20, Seed: 1, WorkDir: t.TempDir(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
}
