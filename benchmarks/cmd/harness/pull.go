package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/pull"
	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/layers"
)

// Images of the first many-small workload pulled for real.
const (
	pullImages      = 8
	pullImagesQuick = 4
)

// runPull serves the corpus with `nixery serve`, pulls the first images of
// the first many-small workload with a private Docker engine
// (benchmarks/pull) and compares the layer bytes Docker downloaded with
// this harness's simulation of the same pulls (layers.Group at the
// server's budget, the Docker engine's chain rule, exact sizes).
func runPull(ctx context.Context, e *env) error {
	if !e.opts.pull || e.corpus == nil {
		return nil
	}
	var w sim.Workload
	for _, x := range e.workloads {
		if x.Shape == sim.ManySmall {
			w = x
			break
		}
	}
	n := pullImages
	if e.opts.quick {
		n = pullImagesQuick
	}
	w.Images = w.Images[:min(n, len(w.Images))]
	var images [][]string
	for _, im := range w.Images {
		var pkgs []string
		if im.Shell {
			pkgs = append(pkgs, "shell")
		}
		for _, p := range im.Packages {
			if !(im.Shell && isShell(e.universe, p)) {
				pkgs = append(pkgs, p)
			}
		}
		images = append(images, pkgs)
	}
	work, err := os.MkdirTemp("", "nixery-harness-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	res, err := pull.Run(ctx, pull.Options{
		PkgsPath:   e.corpus.PkgsPath,
		Popularity: e.corpus.Popularity,
		Images:     images,
		WorkDir:    filepath.Join(work, "run"),
		Logger:     e.log,
	})
	if err != nil {
		return err
	}
	// The server's budget counts the customisation layer.
	budget := layers.DefaultBudget - 1
	ours := sim.Algorithm{Name: sim.Ours, Group: layers.Group}
	out, err := sim.Simulate(e.universe, []sim.Workload{w}, []sim.Algorithm{ours}, []int{budget}, e.sizes)
	if err != nil {
		return err
	}
	simulated := out.Results[0].ChainBytes
	measured := res.StorePathLayerBytes()
	verdict := "agree within 2%"
	if err := pull.Agree(measured, simulated, 0.02); err != nil {
		verdict = "DISAGREE: " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The first %d images of workload %s, served by `nixery serve` from the corpus and pulled in order by a private Docker engine through a counting proxy (benchmarks/pull).\n\n", len(images), w.Name())
	b.WriteString("| image | layers | fetched | already there | layer bytes | pull seconds |\n|---|---:|---:|---:|---:|---:|\n")
	for _, im := range res.Images {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.1f |\n", pull.ImageName(im.Packages), len(im.Manifest.Layers), im.LayersFetched, im.AlreadyExists, im.LayerBytes, im.Duration.Seconds())
	}
	fmt.Fprintf(&b, "\n- Store-path layer bytes Docker downloaded: %d (all layer bytes %d, with the customisation layers).\n", measured, res.LayerBytes)
	fmt.Fprintf(&b, "- Simulated by this harness (layers.Group, budget %d, Docker's chain rule): %d: %s (%+.3f%%).\n", budget, simulated, verdict, 100*float64(measured-simulated)/float64(max(simulated, 1)))
	fmt.Fprintf(&b, "- Peak RSS of `nixery serve` over the run: %.1f MiB.\n", float64(res.Server.MaxRSS)/(1<<20))
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Real pulls", Body: b.String()})
	if verdict != "agree within 2%" {
		return fmt.Errorf("real pulls: %s", verdict)
	}
	return nil
}

func isShell(u *sim.Universe, attr string) bool {
	for _, s := range u.Shell {
		if s == attr {
			return true
		}
	}
	return false
}
