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
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/benchmarks/speed"
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
	load := speed.WrkOptions{Duration: 5 * time.Second}
	if e.opts.quick {
		load.Duration = time.Second
	}
	res, err := pull.Run(ctx, pull.Options{
		PkgsPath:   e.corpus.PkgsPath,
		Popularity: e.corpus.Popularity,
		Images:     images,
		WorkDir:    filepath.Join(work, "run"),
		Load:       load,
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
	if m := res.Manifest; m != nil {
		fmt.Fprintf(&b, "- Cached manifest GET, %d connections: %s\n", m.Server.Connections, describeComparison(m))
	}
	if bl := res.Blob; bl != nil {
		fmt.Fprintf(&b, "- Blob GET throughput: %s\n", describeComparison(bl))
	}
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

// describeComparison renders a load test next to its bare net/http
// baseline.
func describeComparison(c *speed.Comparison) string {
	w := func(r *speed.WrkResult) string {
		return fmt.Sprintf("%.0f req/s, %.1f MB/s, p50 %s, p90 %s, p99 %s", r.RequestsPerSec, r.BytesPerSec/1e6,
			r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	}
	return fmt.Sprintf("nixery %s; bare net/http on the same %d bytes %s (requests ratio %.2f)",
		w(c.Server), c.Bytes, w(c.Baseline), c.RequestsRatio())
}
