package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/layers"
)

// sensitivityRisks are the merge-risk constants of layers.Group's
// sensitivity table (the default is 40).
var sensitivityRisks = []float64{10, 20, 40, 80, 160}

// runArchive simulates the second, large corpus (the Debian archive index
// snapshot, sim.Archive) on its held-out seeds, and the sensitivity of
// layers.Group to its merge-risk constant there. It needs neither Nix nor
// the main corpus.
func runArchive(ctx context.Context, e *env) error {
	if !e.opts.archive {
		return nil
	}
	u, sizes, err := sim.Archive()
	if err != nil {
		return err
	}
	sw := sim.ArchiveSweep
	if e.opts.quick {
		sw.ImageCounts = []int{10, 10, 10}
	}
	workloads, err := sw.Workloads(u)
	if err != nil {
		return err
	}
	out, err := sw.Run(u, workloads, sizes)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var closures, most int
	images := 0
	for _, w := range workloads {
		for _, im := range w.Images {
			g, err := u.Closure(im)
			if err != nil {
				return err
			}
			closures += g.Len()
			most = max(most, g.Len())
			images++
		}
	}
	counts := make([]string, len(sw.Seeds))
	for i, s := range sw.Seeds {
		counts[i] = fmt.Sprintf("seed %d: %d images", s, sw.ImageCounts[i])
	}
	c := report.Corpus{
		Title: "Archive corpus (held-out seeds)",
		Description: fmt.Sprintf("%s, from the committed snapshot `benchmarks/sim/%s` (regenerate with `go generate ./benchmarks/sim`). "+
			"NAR size = Installed-Size, compressed size = the .deb's Size, %d bytes per layer. "+
			"Workloads: the three shapes with held-out seeds (%s), %d images; closures of %.0f store paths on average, up to %d. "+
			"Nothing was tuned on these seeds: choices were made on seeds %v and on the main corpus.",
			u.Name, sim.ArchiveFile, sizes.Overhead, strings.Join(counts, ", "), images, float64(closures)/float64(images), most, sim.ArchiveTuningSweep.Seeds),
		Outcome: out,
		Targets: report.ArchiveTargets,
	}
	if !e.opts.quick {
		var variants []sim.Algorithm
		var names, labels, others []string
		for _, r := range sensitivityRisks {
			name := fmt.Sprintf("%s/risk=%g", sim.Ours, r)
			variants = append(variants, sim.Algorithm{Name: name, Group: layers.GroupOptions{MergeRisk: r}.Group})
			names = append(names, name)
			labels = append(labels, fmt.Sprintf("merge risk 1/%g", r))
		}
		vo, err := sim.Simulate(u, workloads, variants, sim.Budgets, sizes)
		if err != nil {
			return err
		}
		all := &sim.Outcome{Results: vo.Results}
		for _, r := range out.Results {
			if r.Algorithm != sim.Ours {
				all.Results = append(all.Results, r)
				if !contains(others, r.Algorithm) {
					others = append(others, r.Algorithm)
				}
			}
		}
		c.Sections = append(c.Sections, report.Section{
			Title: "Sensitivity to layers.Group's merge risk",
			Body: "The pull ratio of layers.Group on these held-out workloads with each merge-risk constant (a merge counts " +
				"1/risk of the receiving layer's bytes as duplicated; the default is 1/40), and the cells it wins against the other comparators.\n\n" +
				report.Sensitivity(all, names, labels, others, []int{20, 40, 100}),
		})
	}
	e.data.Corpora = append(e.data.Corpora, c)
	return nil
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
