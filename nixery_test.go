package nixery_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/validate"

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

// TestImageWith: the OCI view has the digest the registry serves to a
// client asking for OCI, an explicit x86_64-linux is the default image,
// and a system the name contradicts is a bad name.
func TestImageWith(t *testing.T) {
	testutil.RequireTools(t, "nix-build")
	srv, err := nixery.New(t.Context(), nixery.WithStorage(t.TempDir()), nixery.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := t.Context()
	img, err := srv.Image(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	docker, _ := img.Digest()
	same, err := srv.ImageWith(ctx, "hello", nixery.ImageOptions{System: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := same.Digest(); d != docker {
		t.Errorf("-system x86_64-linux: %s, the default image is %s", d, docker)
	}
	oci, err := srv.ImageWith(ctx, "hello", nixery.ImageOptions{OCI: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(oci); err != nil {
		t.Errorf("validate: %v", err)
	}
	req := httptest.NewRequest(http.MethodGet, "/v2/hello/manifests/latest", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if d, _ := oci.Digest(); rec.Code != http.StatusOK || rec.Header().Get("Docker-Content-Digest") != d.String() {
		t.Errorf("OCI view %s; the registry answers %d with %s", d, rec.Code, rec.Header().Get("Docker-Content-Digest"))
	}
	if _, err := srv.ImageWith(ctx, "arm64/hello", nixery.ImageOptions{System: "x86_64-linux"}); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("arm64/hello for x86_64-linux: %v, want a name error", err)
	}
	if _, err := srv.ImageWith(ctx, "hello", nixery.ImageOptions{System: "riscv64-linux"}); err == nil {
		t.Error("riscv64-linux: no error")
	}
}
