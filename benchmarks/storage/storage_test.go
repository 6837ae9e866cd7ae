package storage

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

func TestImageNames(t *testing.T) {
	a, b := imageNames(1), imageNames(1)
	seen := map[string]bool{}
	for range 500 {
		x, y := a(), b()
		if x != y {
			t.Fatalf("the same seed gave %s and %s", x, y)
		}
		if seen[x] {
			t.Fatalf("%s twice", x)
		}
		seen[x] = true
		if k := strings.Count(x, "/") + 1; k < 1 || k > 3 {
			t.Errorf("%s: %d packages", x, k)
		}
	}
	if imageNames(2)() == imageNames(1)() && imageNames(3)() == imageNames(1)() {
		t.Error("the seed changes nothing")
	}
}

func TestParseCollections(t *testing.T) {
	var r Result
	parseCollections(`time=x level=INFO msg="garbage collection" images=2 blobs=5 blob_bytes=1000 cache_entries=0 cache_bytes=0 store_paths=0 bytes_before=1 bytes_after=1 limit=9 disk_full=false duration=15ms
time=x level=INFO msg=request
time=x level=INFO msg="garbage collection" images=1 blobs=1 blob_bytes=24 cache_entries=3 cache_bytes=0 store_paths=0 bytes_before=1 bytes_after=1 limit=9 disk_full=false duration=1.2s
`, &r)
	if r.Collections != 2 || r.ImagesDropped != 3 || r.BlobsDeleted != 6 || r.BlobBytes != 1024 || r.LongestCollect != 1200*time.Millisecond {
		t.Errorf("%+v", r)
	}
}

// TestRun runs a small workload (a 60 MB limit, 240 MB written, the 3
// most recent images) against the real server. At this scale one image's
// build (its new blobs and cache entries, written before the collection
// that follows it) is more than a tenth of the limit, so the storage is
// checked against the limit and two of the largest images; the harness
// runs the full target (500 MB, 2 GB, 20 images), where a tenth holds.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nixery serve with the real Nix")
	}
	testutil.RequireTools(t, "go", "nix-store", "nix-instantiate", "nix")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Limit: 60_000_000, WouldWrite: 240_000_000, Recent: 3, WorkDir: t.TempDir(), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.PeakApparent > res.Limit+2*res.Largest {
		t.Errorf("the storage reached %d bytes; the limit is %d, the largest image %d bytes", res.PeakApparent, res.Limit, res.Largest)
	}
	if res.RecentFailed > 0 || res.RecentNixRuns > 0 || res.Wrong > 0 || res.WouldWrite < 4*res.Limit {
		t.Errorf("recent images: %d failed, %d Nix runs; %d wrong bodies; would write %d", res.RecentFailed, res.RecentNixRuns, res.Wrong, res.WouldWrite)
	}
	if res.Collections == 0 || res.ImagesDropped == 0 {
		t.Error("nothing was collected")
	}
}
