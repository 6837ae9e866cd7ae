package nixery_test

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/internal/testutil"
)

// TestImageGolden: the library's Image gives the digest `nixery serve`
// serves, pinned in testdata/golden-digests.json for the store paths it
// was recorded with; and two servers with storage directories of their own
// give each image the same digest, whatever the host's store paths.
func TestImageGolden(t *testing.T) {
	testutil.RequireTools(t, "nix-build")
	golden := testutil.LoadGolden(t)
	newServer := func() *nixery.Server {
		srv, err := nixery.New(t.Context(), nixery.WithStorage(t.TempDir()), nixery.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	a, b := newServer(), newServer()
	pinned := 0
	for name := range golden {
		img, err := a.Image(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.Image(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if d2, err := again.Digest(); err != nil || d2 != d {
			t.Errorf("%s: digest %s from one storage directory, %s (%v) from another", name, d, d2, err)
		}
		key := testutil.StorePathsKey(t, img)
		want, ok := golden.Lookup(name, key)
		if !ok {
			rec, _ := json.Marshal(testutil.GoldenEntry{StorePaths: key, Docker: d.String()})
			t.Logf("%s: no digest is pinned for this host's store paths (its Debian packages differ from every recorded machine's); to pin them, add to its list (oci from TestServeRealNix's log): %s", name, rec)
			continue
		}
		pinned++
		if d.String() != want.Docker {
			t.Errorf("%s: digest %s, golden %s for the same store paths", name, d, want.Docker)
		}
	}
	t.Logf("%d of %d images checked against pinned digests", pinned, len(golden))
}
