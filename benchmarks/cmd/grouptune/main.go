// Command grouptune prints layers.Group's figures on the tuning seeds of
// the archive corpus (sim.ArchiveTuningSweep) and on the main corpus, for
// choosing its constants without looking at the held-out seeds:
//
//	go run ./benchmarks/cmd/grouptune -build   # once: the main corpus and its sizes, from the harness's caches
//	go run ./benchmarks/cmd/grouptune [-risk R] [-per-layer D] [-horizon H] [-order X] [-corpus archive|main|both]
//
// Per shape and budget: Group's pull ratio and the best other algorithm's,
// modelled pull times (sim.DefaultPullModel), and chain-rule ratios; and
// the (workload, budget) cells Group loses.
package main

import (
	"context"
	"encoding/gob"
	"log/slog"
	"path/filepath"
	"runtime"

	"flag"
	"fmt"
	"github.com/nixery-go/nixery/benchmarks/corpus"
	"os"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
)

var opts layers.GroupOptions

type dump struct {
	Paths      []closure.Path
	Packages   map[string]string
	Shell      []string
	Always     []string
	Popularity closure.Popularity
	Sizes      map[string]int64
	Overhead   int64
}

func main() {
	mainDump := flag.String("main", "/tmp/group-main.gob", "dump of the main corpus")
	heldOut := flag.Bool("heldout", false, "archive held-out seeds (for the final table only)")
	which := flag.String("corpus", "both", "archive, main or both")
	flag.Float64Var(&opts.MergeRisk, "risk", 0, "merge risk")
	flag.DurationVar(&opts.PerLayer, "per-layer", 0, "per-layer cost (0 default, negative none)")
	flag.Float64Var(&opts.Horizon, "horizon", 0, "horizon: kinds of image holding a path that a client pulls (0 default, negative none)")
	flag.Float64Var(&opts.Order, "order", 0, "order: exponent of the popularity odds in the layers' order key (0 default, negative size alone)")
	build := flag.Bool("build", false, "build the main corpus (cached) and write the dump")
	flag.Parse()
	if *build {
		check(buildDump(*mainDump))
		return
	}
	algos := sim.Algorithms()
	for i := range algos {
		if algos[i].Name == sim.Ours {
			algos[i].Group = opts.Group
		}
	}
	if *which != "main" {
		u, sizes, err := sim.Archive()
		check(err)
		sw := sim.ArchiveTuningSweep
		if *heldOut {
			sw = sim.ArchiveSweep
		}
		ws, err := sw.Workloads(u)
		check(err)
		o, err := sim.Simulate(u, ws, algos, sim.Budgets, sizes)
		check(err)
		show("archive", o)
	}
	if *which != "archive" {
		f, err := os.Open(*mainDump)
		check(err)
		var d dump
		check(gob.NewDecoder(f).Decode(&d))
		g, err := closure.New(d.Paths, nil)
		check(err)
		u := &sim.Universe{Name: "main", Graph: g, Popularity: d.Popularity, Packages: d.Packages, Shell: d.Shell, Always: d.Always}
		sw := sim.Sweep{Seeds: []uint64{1, 2, 3}, Images: 60}
		ws, err := sw.Workloads(u)
		check(err)
		o, err := sim.Simulate(u, ws, algos, sim.Budgets, sim.Sizes{Paths: d.Sizes, Overhead: d.Overhead})
		check(err)
		show("main", o)
	}
}

func show(name string, o *sim.Outcome) {
	m := sim.DefaultPullModel
	chk := report.CheckTargets(o, sim.Ours)
	tw, tc, tl := report.TimeCheck(o, sim.Ours, m)
	agg := report.Aggregate(o)
	fmt.Printf("== %s: bytes wins %d/%d, time wins %d/%d\n", name, chk.Wins, chk.Cells, tw, tc)
	for _, l := range chk.Losses {
		fmt.Println("  bytes lost:", l)
	}
	for _, l := range tl {
		fmt.Println("  time lost:", l)
	}
	times := report.Times(o, m)
	var algs []string
	for _, a := range sim.Algorithms() {
		algs = append(algs, a.Name)
	}
	fmt.Printf("%-13s %4s %8s %-18s %8s %-18s %7s %7s\n", "shape", "b", "ours", "best other", "time", "best other t", "chain", "bestch")
	for _, s := range sim.Shapes {
		for _, b := range sim.Budgets {
			ours := agg[s][sim.Ours][b]
			bo, bn := 1e18, ""
			to, tn := 1e18, ""
			co := 1e18
			for _, a := range algs {
				if a == sim.Ours {
					continue
				}
				if r := agg[s][a][b].Ratio(); r < bo {
					bo, bn = r, a
				}
				if t := times[s][a][b].Seconds(); t < to {
					to, tn = t, a
				}
				co = min(co, agg[s][a][b].ChainRatio())
			}
			fmt.Printf("%-13s %4d %8.3f %-18s %8.1f %-18s %7.3f %7.3f\n", s, b, ours.Ratio(), fmt.Sprintf("%.3f %s", bo, short(bn)), times[s][sim.Ours][b].Seconds(), fmt.Sprintf("%.1f %s", to, short(tn)), ours.ChainRatio(), co)
		}
	}
}

func short(a string) string {
	return strings.NewReplacer("popularity-contest", "pop", "nixery-dominator", "dom", "single-layer", "single", "size-greedy", "greedy", "auto-layer", "auto").Replace(a)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func buildDump(out string) error {
	ctx := context.Background()
	cache, _ := os.UserCacheDir()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := corpus.Build(ctx, corpus.Options{WorkDir: filepath.Join(cache, "nixery-bench-corpus"), Logger: log})
	if err != nil {
		return err
	}
	d := dump{Paths: c.Graph.Paths(), Packages: map[string]string{}, Popularity: c.Popularity}
	for a, p := range c.Packages {
		d.Packages[a] = p
	}
	for _, alias := range []string{"bashInteractive", "coreutils", "moreutils", "nano"} {
		attr := alias
		if t, ok := c.Aliases[alias]; ok {
			attr = t
		}
		if p, ok := c.Packages[attr]; ok {
			d.Packages[alias] = p
			d.Shell = append(d.Shell, alias)
			if attr != alias {
				delete(d.Packages, attr)
			}
		}
	}
	for _, a := range []string{corpus.AttrCacert, corpus.AttrIanaEtc} {
		if _, ok := c.Packages[a]; ok {
			d.Always = append(d.Always, a)
		}
	}
	g, _ := closure.New(d.Paths, nil)
	u := &sim.Universe{Graph: g, Popularity: d.Popularity, Packages: d.Packages, Shell: d.Shell, Always: d.Always}
	ws, err := sim.Sweep{Seeds: []uint64{1, 2, 3}, Images: 60}.Workloads(u)
	if err != nil {
		return err
	}
	paths, err := sim.Paths(u, ws)
	if err != nil {
		return err
	}
	store, err := layers.NewFSStore(filepath.Join(cache, "nixery-bench-members", "store"))
	if err != nil {
		return err
	}
	asm, err := layers.NewAssembler(store, filepath.Join(cache, "nixery-bench-members", "cache"), layers.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	sizes, err := sim.MeasureSizes(ctx, asm, paths, runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	d.Sizes, d.Overhead = sizes.Paths, sizes.Overhead
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	return gob.NewEncoder(f).Encode(&d)
}
