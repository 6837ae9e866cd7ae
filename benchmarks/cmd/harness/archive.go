package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/layers"
)

// sensitivityRisks are the merge-risk constants of layers.Group's
// sensitivity table (the default is 40).
var sensitivityRisks = []float64{10, 20, 40, 80, 160}

// sensitivityPerLayer are the per-layer costs layers.Group assumes in its
// second sensitivity table (its default, that of the pull-time model, is
// 50 ms; -1 turns its tiny merges off). The table's time wins are always
// measured with the report's model.
var sensitivityPerLayer = []time.Duration{-1, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond}

// sensitivityHorizons are the horizons of layers.Group's pull-time model
// (kinds of image holding a path that one client pulls) of the sensitivity
// table; -1 is none, every kind counting.
var sensitivityHorizons = []float64{-1, 50, 100, 200, 500, 1000}

// sensitivityOrders are the exponents of the popularity odds in the key
// that orders layers.Group's layers, for its order's sensitivity table
// (the default is 1/4; -1 is size alone).
var sensitivityOrders = []float64{-1, 0.125, 0.25, 0.5, 1}

// archive is the archive corpus with its held-out workloads.
type archive struct {
	u         *sim.Universe
	sizes     sim.Sizes
	sw        sim.Sweep
	workloads []sim.Workload
}

// archiveCorpus loads the archive corpus and makes its held-out workloads
// (fewer images with -quick) the first time a stage asks, for every stage.
func (e *env) archiveCorpus() (*archive, error) {
	if e.archive != nil {
		return e.archive, nil
	}
	u, sizes, err := sim.Archive()
	if err != nil {
		return nil, err
	}
	sw := sim.ArchiveSweep
	if e.opts.quick {
		sw.ImageCounts = []int{10, 10, 10}
	}
	workloads, err := sw.Workloads(u)
	if err != nil {
		return nil, err
	}
	e.archive = &archive{u: u, sizes: sizes, sw: sw, workloads: workloads}
	return e.archive, nil
}

// runArchive simulates the second, large corpus (the Debian archive index
// snapshot, sim.Archive) on its held-out seeds, and the sensitivity of
// layers.Group to its merge-risk constant there. It needs neither Nix nor
// the main corpus.
func runArchive(ctx context.Context, e *env) error {
	if !e.opts.archive {
		return nil
	}
	a, err := e.archiveCorpus()
	if err != nil {
		return err
	}
	u, sizes, sw, workloads := a.u, a.sizes, a.sw, a.workloads
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
		var others []string
		for _, r := range out.Results {
			if r.Algorithm != sim.Ours && !contains(others, r.Algorithm) {
				others = append(others, r.Algorithm)
			}
		}
		// table simulates the variants and renders their sensitivity table
		// against the other comparators.
		table := func(vs []variant, chain bool) (string, error) {
			var algos []sim.Algorithm
			var names, labels []string
			for _, v := range vs {
				name := fmt.Sprintf("%s/%s", sim.Ours, v.label)
				algos = append(algos, sim.Algorithm{Name: name, Group: v.opts.Group})
				names = append(names, name)
				labels = append(labels, v.label)
			}
			vo, err := sim.Simulate(u, workloads, algos, sim.Budgets, sizes)
			if err != nil {
				return "", err
			}
			all := &sim.Outcome{Results: vo.Results}
			for _, r := range out.Results {
				if r.Algorithm != sim.Ours {
					all.Results = append(all.Results, r)
				}
			}
			return report.Sensitivity(all, names, labels, others, []int{20, 40, 100}, e.data.Model, chain), nil
		}
		risk, err := table(variants(sensitivityRisks, func(r float64) variant {
			return variant{layers.GroupOptions{MergeRisk: r}, fmt.Sprintf("merge risk 1/%g", r)}
		}), false)
		if err != nil {
			return err
		}
		perLayer, err := table(variants(sensitivityPerLayer, orNone(func(pl time.Duration) layers.GroupOptions {
			return layers.GroupOptions{PerLayer: pl}
		}, "no per-layer cost", "%s a layer")), false)
		if err != nil {
			return err
		}
		horizon, err := table(variants(sensitivityHorizons, orNone(func(h float64) layers.GroupOptions {
			return layers.GroupOptions{Horizon: h}
		}, "no horizon", "horizon %g")), false)
		if err != nil {
			return err
		}
		order, err := table(variants(sensitivityOrders, orNone(func(x float64) layers.GroupOptions {
			return layers.GroupOptions{Order: x}
		}, "size alone", "odds^%g")), true)
		if err != nil {
			return err
		}
		c.Sections = append(c.Sections, report.Section{
			Title: "Sensitivity to layers.Group's merge risk",
			Body: "The pull ratio of layers.Group on these held-out workloads with each merge-risk constant (a merge counts " +
				"1/risk of the receiving layer's bytes as duplicated; the default is 1/40), and the cells where it has the lowest pull bytes " +
				"and the lowest modelled pull time against the other comparators.\n\n" + risk,
		}, report.Section{
			Title: "Sensitivity to layers.Group's per-layer cost",
			Body: fmt.Sprintf("The same with each per-layer cost that layers.Group assumes for its tiny merges (layers.GroupOptions.PerLayer; "+
				"at %g MB/s, the default of 50 ms makes a layer worth 5 MB; \"no per-layer cost\" merges only when the budget forces it). "+
				"Time wins are measured with the report's model (%s) whatever Group assumed.\n\n", layers.DefaultBandwidth/1e6, e.data.Model) + perLayer,
		}, report.Section{
			Title: "Sensitivity to layers.Group's horizon",
			Body: fmt.Sprintf("The same with each horizon of layers.Group's tiny merges (layers.GroupOptions.Horizon: the kinds of image holding "+
				"a path that one client is taken to pull; the default is %d; \"no horizon\" counts every kind, as before the horizon). "+
				"It changes only merges of paths that more kinds of image hold than the horizon: on the main corpus (9 of its 776 paths "+
				"above 200 kinds) every horizon from 200 up gave the same figures on the tuning seeds (benchmarks/cmd/grouptune).\n\n", layers.DefaultHorizon) + horizon,
		}, report.Section{
			Title: "Sensitivity to layers.Group's order",
			Body: fmt.Sprintf("The Docker engine's chain-rule pull ratio of layers.Group on these held-out workloads with each exponent of "+
				"the popularity odds in the key that orders its layers (layers.GroupOptions.Order: the key is bytes*odds^x, the odds "+
				"(pop+1)/(top-pop+1) of the layer's highest popularity against the image's; the default is x = %g; \"size alone\", a negative Order, is x = 0). "+
				"The order changes no layer, so the pull bytes and the modelled pull time, and their wins, are the same in every row; "+
				"the chain-rule wins count the cells where it has the lowest bytes under the chain rule against the other comparators.\n\n", layers.DefaultOrder) + order,
		})
	}
	bounds, err := sim.Bounds(u, workloads, sizes)
	if err != nil {
		return err
	}
	c.Sections = append(c.Sections, report.Section{
		Title: "Offline bounds",
		Body: "What no layout can beat on these workloads, even one made knowing every image to come (sim.Bounds): under the chain rule " +
			"an image reuses at most what it shares with one earlier image; and a layout that downloads no path twice must give each image a " +
			"layer for each set of later images that hold some of its new paths, and needs no more. The ideal bytes thus fit in far fewer " +
			"layers than any algorithm pulls, so lowest bytes and lowest modelled time do not conflict for a layout that knows the future; " +
			"they do for every algorithm here, which sees one image at a time.\n\n" +
			report.Bounds(out, bounds, sim.Ours, 100, sizes, e.data.Model),
	})
	e.data.Corpora = append(e.data.Corpora, c)
	return nil
}

// A variant is one row of a sensitivity table: layers.Group with other
// constants.
type variant struct {
	opts  layers.GroupOptions
	label string
}

// variants makes a sensitivity table's rows, one for each value.
func variants[T any](values []T, row func(T) variant) []variant {
	vs := make([]variant, len(values))
	for i, v := range values {
		vs[i] = row(v)
	}
	return vs
}

// orNone makes the rows of a table whose option turns a step off when
// negative: labelled none there, and format with the value elsewhere.
func orNone[T ~int64 | ~float64](set func(T) layers.GroupOptions, none, format string) func(T) variant {
	return func(x T) variant {
		if x < 0 {
			return variant{set(x), none}
		}
		return variant{set(x), fmt.Sprintf(format, x)}
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
