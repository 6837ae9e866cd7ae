package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/storage"
)

// The storage-limit workload: the target's scale, and CI's.
var (
	storageFull  = storage.Options{Limit: 500_000_000, WouldWrite: 2_000_000_000, Recent: 20, Seed: 1}
	storageQuick = storage.Options{Limit: 60_000_000, WouldWrite: 240_000_000, Recent: 3, Seed: 1}
)

// runStorage serves the bundled set with NIXERY_STORAGE_LIMIT and pulls
// distinct images until they would have written four times the limit
// (benchmarks/storage), then checks the target: the storage within the
// limit and a tenth, the most recent images served without Nix. In quick
// mode the limit is small enough that one image's build is more than a
// tenth of it; the storage is then checked against the limit and two of
// the largest images.
func runStorage(ctx context.Context, e *env) error {
	if !e.opts.storage {
		return nil
	}
	o := storageFull
	if e.opts.quick {
		o = storageQuick
	}
	work, err := os.MkdirTemp("", "nixery-harness-storage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	o.WorkDir, o.Logger = filepath.Join(work, "run"), e.log
	res, err := storage.Run(ctx, o)
	if err != nil {
		return err
	}
	met := res.Met()
	if e.opts.quick {
		met = nil
		if res.PeakApparent > res.Limit+2*res.Largest || res.RecentFailed+res.RecentNixRuns > 0 || res.Wrong > 0 {
			met = fmt.Errorf("storage peaked at %d bytes (limit %d, largest image %d); recent images: %d failed, %d Nix runs; %d wrong bodies",
				res.PeakApparent, res.Limit, res.Largest, res.RecentFailed, res.RecentNixRuns, res.Wrong)
		}
	}
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	var b strings.Builder
	fmt.Fprintf(&b, "`nixery serve` of the bundled set with NIXERY_STORAGE_LIMIT=%s and NIXERY_MAX_LAYERS=4, pulling %d distinct images of one to three packages (seed %d) one after the other, every body checked against its digest (benchmarks/storage).\n\n",
		mb(res.Limit), res.Images, o.Seed)
	b.WriteString("| measure | value |\n|---|---:|\n")
	for _, row := range [][2]string{
		{"what the images would write (their distinct blobs)", mb(res.WouldWrite)},
		{"storage directory at its largest (apparent bytes, sampled every 100 ms)", mb(res.PeakApparent)},
		{"at its largest in disk blocks", mb(res.PeakDisk)},
		{"at the end", mb(res.FinalApparent)},
		{"largest image", mb(res.Largest)},
		{"collections that removed something", fmt.Sprint(res.Collections)},
		{"images dropped, blobs deleted", fmt.Sprintf("%d, %d (%s)", res.ImagesDropped, res.BlobsDeleted, mb(res.BlobBytes))},
		{"longest collection", res.LongestCollect.String()},
		{fmt.Sprintf("the %d most recent images (%s) pulled again: failed, Nix runs", res.Recent, mb(res.RecentBytes)), fmt.Sprintf("%d, %d", res.RecentFailed, res.RecentNixRuns)},
		{"bodies checked, wrong", fmt.Sprintf("%d, %d", res.Bodies, res.Wrong)},
		{"images per second", fmt.Sprintf("%.2f", res.ImagesPerSecond)},
		{"peak RSS of the server with its Nix children", fmt.Sprintf("%.1f MiB", float64(res.ServerPeakRSS)/(1<<20))},
	} {
		fmt.Fprintf(&b, "| %s | %s |\n", row[0], row[1])
	}
	verdict := "met"
	if met != nil {
		verdict = "NOT met: " + met.Error()
	}
	fmt.Fprintf(&b, "\nTarget (storage within the limit and a tenth, the %d most recent images served without Nix): %s.\n", res.Recent, verdict)
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Storage limit", Body: b.String()})
	return met
}
