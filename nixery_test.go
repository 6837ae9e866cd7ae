package nixery_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"testing"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/internal/testutil"
)

// golden reads testdata/golden-digests.json: image -> format -> digest.
func golden(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile("testdata/golden-digests.json")
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]map[string]string
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestImageGolden: the library's Image gives the digest `nixery serve`
// serves (pinned in testdata), for every golden image.
func TestImageGolden(t *testing.T) {
	testutil.RequireTools(t, "nix-build")
	srv, err := nixery.New(t.Context(), nixery.WithStorage(t.TempDir()), nixery.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for name, want := range golden(t) {
		img, err := srv.Image(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := img.Digest(); err != nil || d.String() != want["docker"] {
			t.Errorf("%s: digest %s (%v), golden %s", name, d, err, want["docker"])
		}
	}
}
