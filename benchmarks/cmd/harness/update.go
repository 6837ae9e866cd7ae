package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/layers"
)

// runUpdates measures package-set updates (sim.SimulateUpdates) on both
// corpora: for the first seed of each workload shape, three packages of
// its images (the most common, the median, one image's own) get a new
// version in turn, and each image holding it is built before and after;
// the section gives the bytes a client holding the old image downloads for
// the new one against the bytes of the paths that changed, and the layers
// without a changed path that the new image lost.
func runUpdates(ctx context.Context, e *env) error {
	budget := layers.DefaultBudget
	var b strings.Builder
	fmt.Fprintf(&b, "One package gets a new version: its store path and those of everything depending on it change, as Nix's hashes do (`sim.Universe.Updated`). "+
		"For the first seed of each workload shape, three packages of its images in turn (the one most images hold, the median one, one held by a single image), at budget %d. "+
		"*changed* is the compressed bytes of the changed paths of the images that hold the package (the least a client must download), *pulled* what a client holding each old image downloads for the new one (per blob), "+
		"*lost* the layers of the old images that hold no changed path and are not in the new ones (the issue asks for none).\n\n", budget)
	type corpusRun struct {
		name      string
		u         *sim.Universe
		sizes     sim.Sizes
		workloads []sim.Workload
	}
	var runs []corpusRun
	if e.universe != nil && e.workloads != nil {
		runs = append(runs, corpusRun{"main corpus", e.universe, e.sizes, firstSeeds(e.workloads)})
	}
	if e.opts.archive {
		a, err := e.archiveCorpus()
		if err != nil {
			return err
		}
		runs = append(runs, corpusRun{"archive corpus (held-out seeds)", a.u, a.sizes, firstSeeds(a.workloads)})
	}
	if len(runs) == 0 {
		return nil
	}
	for _, c := range runs {
		fmt.Fprintf(&b, "**%s**\n\n| workload | package | algorithm | images | changed MB | pulled MB | pulled/changed | layers pulled | layers kept | layers lost |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n", c.name)
		totals := map[string][2]int64{}
		lost := map[string]int{}
		for _, w := range c.workloads {
			pkgs, err := sim.UpdatePackages(c.u, []sim.Workload{w})
			if err != nil {
				return err
			}
			rs, err := sim.SimulateUpdates(c.u, []sim.Workload{w}, sim.Algorithms(), budget, c.sizes, pkgs)
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			for _, r := range rs {
				fmt.Fprintf(&b, "| %s | %s | %s | %d | %.1f | %.1f | %.2f | %d | %d | %d |\n", r.Workload, r.Package, r.Algorithm, r.Images,
					float64(r.ChangedBytes)/1e6, float64(r.PulledBytes)/1e6, r.Ratio(), r.PulledLayers, r.Kept, r.Lost)
				t := totals[r.Algorithm]
				totals[r.Algorithm] = [2]int64{t[0] + r.ChangedBytes, t[1] + r.PulledBytes}
				lost[r.Algorithm] += r.Lost
			}
		}
		b.WriteString("\nAll updates together: ")
		var parts []string
		for _, a := range sim.Algorithms() {
			if t, ok := totals[a.Name]; ok {
				parts = append(parts, fmt.Sprintf("%s %.2f× (%d layers lost)", a.Name, float64(t[1])/float64(max(t[0], 1)), lost[a.Name]))
			}
		}
		b.WriteString(strings.Join(parts, ", ") + ".\n\n")
	}
	e.data.Sections = append(e.data.Sections, report.Section{Title: "Package-set updates", Body: b.String()})
	return nil
}

// firstSeeds returns the workload of the lowest seed of each shape.
func firstSeeds(ws []sim.Workload) []sim.Workload {
	var out []sim.Workload
	seen := map[sim.Shape]bool{}
	for _, w := range ws {
		if !seen[w.Shape] {
			seen[w.Shape] = true
			out = append(out, w)
		}
	}
	return out
}
