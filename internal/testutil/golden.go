package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A GoldenEntry pins the manifest digests an image had for one set of
// store paths: StorePaths is [StorePathsKey] of the image's layers.
type GoldenEntry struct {
	StorePaths string `json:"store_paths"`
	Docker     string `json:"docker"`
	OCI        string `json:"oci"`
}

// Golden is testdata/golden-digests.json: image name -> the entries
// recorded for it, one per set of store paths (the bundled package set's
// store paths follow the host's Debian files, so each machine whose
// packages differ has its own).
type Golden map[string][]GoldenEntry

// LoadGolden reads testdata/golden-digests.json from the module's root.
func LoadGolden(t testing.TB) Golden {
	t.Helper()
	dir, err := ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "testdata", "golden-digests.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g Golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("testdata/golden-digests.json: %v", err)
	}
	if len(g) == 0 {
		t.Fatal("testdata/golden-digests.json pins no image")
	}
	return g
}

// Lookup returns the entry of image recorded for the store paths key.
func (g Golden) Lookup(image, key string) (GoldenEntry, bool) {
	for _, e := range g[image] {
		if e.StorePaths == key {
			return e, true
		}
	}
	return GoldenEntry{}, false
}

var storeDir = regexp.MustCompile(`^/?nix/store/([^/]+)/?$`)

// StorePathsKey is the SHA-256 of the sorted names of the store paths in
// img's layers (the /nix/store/NAME directories their tars hold), in hex:
// what an image's bytes are made of, apart from the format.
func StorePathsKey(t testing.TB, img v1.Image) string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ReadTar(t, rc) {
			if m := storeDir.FindStringSubmatch(e.Header.Name); m != nil {
				names = append(names, m[1])
			}
		}
		rc.Close()
	}
	if len(names) == 0 {
		t.Fatal("the image's layers hold no store path")
	}
	slices.Sort(names)
	names = slices.Compact(names)
	sum := sha256.Sum256([]byte(strings.Join(names, "\n")))
	return hex.EncodeToString(sum[:])
}
