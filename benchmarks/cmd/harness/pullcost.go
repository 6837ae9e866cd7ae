package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixery-go/nixery/benchmarks/pull"
	"github.com/nixery-go/nixery/benchmarks/report"
)

// costImage is the image whose cold pulls measure the per-layer cost
// (shell and those of the others the corpus has).
var costImage = []string{"shell", "jq", "curl"}

// costTarget bounds a cold pull of costImage as served over the same image
// flattened (issue 14).
const costTarget = 1.5

// runPullCost measures the per-layer cost of a pull with the real Docker
// engine and podman (benchmarks/pull.LayerCost): costImage as served and
// flattened into one store-path layer, cold pulls of each, alternating.
func runPullCost(ctx context.Context, e *env) error {
	if !e.opts.pull || e.corpus == nil {
		return nil
	}
	// The quick corpus (and another machine's) may lack some of the
	// packages: the image is made of those it has.
	image := costImage[:1]
	for _, p := range costImage[1:] {
		if _, ok := e.corpus.Packages[p]; ok {
			image = append(image, p)
		}
	}
	if len(image) == 1 {
		return fmt.Errorf("per-layer cost: the corpus has none of %v", costImage[1:])
	}
	work, err := os.MkdirTemp("", "nixery-harness-cost-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	rounds := 3
	if e.opts.quick {
		rounds = 1
	}
	res, err := pull.LayerCost(ctx, pull.CostOptions{
		PkgsPath:   e.corpus.PkgsPath,
		Popularity: e.corpus.Popularity,
		Image:      image,
		WorkDir:    filepath.Join(work, "run"),
		Rounds:     rounds,
		Logger:     e.log,
	})
	if err != nil {
		return err
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` served by `nixery serve` from the corpus as it is layered (%d layers, %d bytes) and flattened (`NIXERY_MAX_LAYERS=2`: %d layers, %d bytes), %d cold pulls of each by each engine, alternating: Docker (classic store) with a new empty private engine for every pull, podman with a new empty store (benchmarks/pull.LayerCost).\n\n",
		res.Image, res.Layers, res.Bytes, res.FlatLayers, res.FlatBytes, rounds)
	b.WriteString("| engine | layered, median ms | flattened, median ms | ratio | per-layer cost, ms | all layered pulls, ms | all flattened pulls, ms |\n|---|---:|---:|---:|---:|---|---|\n")
	for _, c := range res.Engines {
		var many, flat []string
		for _, d := range c.Many {
			many = append(many, ms(d))
		}
		for _, d := range c.Flat {
			flat = append(flat, ms(d))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.1f | %s | %s |\n", c.Engine, ms(pull.Median(c.Many)), ms(pull.Median(c.Flat)), c.Ratio(),
			float64(res.PerLayer(c))/float64(time.Millisecond), strings.Join(many, " "), strings.Join(flat, " "))
	}
	d := res.Engines[0]
	verdict := "met"
	if d.Ratio() > costTarget {
		verdict = "NOT met"
	}
	fmt.Fprintf(&b, "\n- Target: the cold Docker pull at most %.1f× the flattened one: %.2f×, %s.\n", costTarget, d.Ratio(), verdict)
	fmt.Fprintf(&b, "- The pull-time model of this report assumes %s per layer and %.0f MB/s.\n", e.data.Model.PerLayer, e.data.Model.Bandwidth/1e6)
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Per-layer cost of a pull", Body: b.String()})
	return nil
}
