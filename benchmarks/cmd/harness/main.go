// Command harness runs nixery's benchmarks and writes a report.
//
//	go run ./benchmarks/cmd/harness [-quick] [-out DIR] [-synthetic]
//
// It builds the Debian corpus (benchmarks/corpus: the machine's installed
// Debian packages as a Nix package set; -quick builds a small subset),
// measures the compressed size of every store path the workloads use,
// simulates the layer-sharing workloads for every layering algorithm and
// budget (benchmarks/sim), and writes results.md and SVG plots to DIR
// (default benchmarks/results/latest, with -quick benchmarks/results/quick,
// so that CI never overwrites the committed full results). -synthetic uses a seeded synthetic
// package set instead of the corpus and needs no Nix. The storage stage
// (benchmarks/storage) serves the bundled set under a storage limit and
// checks the garbage collection target; -storage=false leaves it out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nixery-go/nixery/benchmarks/corpus"
	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
	"github.com/nixery-go/nixery/layers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	quick, synthetic bool
	speed, pull      bool
	http, storage    bool
	out, workDir     string
	cacheDir         string
	images           int
	seeds            int
	archive          bool
	bandwidth        float64
	perLayer         time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.BoolVar(&o.quick, "quick", false, "small corpus and fewer images (CI; under 2 minutes)")
	fs.BoolVar(&o.synthetic, "synthetic", false, "use a synthetic package set instead of the Debian corpus (no Nix needed)")
	fs.StringVar(&o.out, "out", "", "directory for results.md and the SVG plots (default benchmarks/results/latest, with -quick benchmarks/results/quick)")
	fs.StringVar(&o.workDir, "workdir", "", "corpus work directory (default: nixery-bench-corpus[-quick] in the user cache directory)")
	fs.StringVar(&o.cacheDir, "cache", "", "layer member cache, kept across runs (default: nixery-bench-members in the user cache directory)")
	fs.IntVar(&o.images, "images", 0, "images per workload (default 60, quick 50)")
	fs.IntVar(&o.seeds, "seeds", 3, "seeds per workload shape")
	fs.BoolVar(&o.speed, "speed", true, "measure assembly speed against tar | gzip and tar | pigz (needs the corpus)")
	fs.BoolVar(&o.http, "http", true, "measure the registry's cached manifest and blob GETs against bare net/http with wrk (benchmarks/httpbench)")
	fs.BoolVar(&o.storage, "storage", true, "serve the bundled set under a storage limit with a workload that would write four times it, and check the storage target (needs Nix)")
	fs.BoolVar(&o.pull, "pull", true, "pull a small workload with a private Docker engine from nixery serve and compare with the simulation (needs the corpus and dockerd)")
	fs.BoolVar(&o.archive, "archive", true, "simulate the archive corpus (Debian's archive index, committed snapshot) on its held-out seeds")
	fs.Float64Var(&o.bandwidth, "bandwidth", sim.DefaultPullModel.Bandwidth/1e6, "bandwidth of the pull-time model, MB/s")
	fs.DurationVar(&o.perLayer, "per-layer", sim.DefaultPullModel.PerLayer, "per-layer cost of the pull-time model")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.bandwidth <= 0 || o.perLayer < 0 {
		return nil, fmt.Errorf("-bandwidth must be positive and -per-layer not negative")
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.out == "" {
		o.out = filepath.Join("benchmarks", "results", "latest")
		if o.quick {
			o.out = filepath.Join("benchmarks", "results", "quick")
		}
	}
	if o.images == 0 {
		o.images = 60
		if o.quick {
			o.images = 50
		}
	}
	if o.images < 1 || o.seeds < 1 {
		return nil, fmt.Errorf("-images and -seeds must be positive")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	start := time.Now()
	d := &report.Data{
		Command: strings.TrimSpace("go run ./benchmarks/cmd/harness " + strings.Join(args, " ")),
		Date:    start,
		Ours:    sim.Ours,
		Budgets: sim.Budgets,
		Model:   sim.PullModel{Bandwidth: o.bandwidth * 1e6, PerLayer: o.perLayer},
	}
	for _, a := range sim.Algorithms() {
		d.Algorithms = append(d.Algorithms, a.Name)
	}
	// A phase that fails is recorded and the run goes on with the phases
	// that do not need it; the report is written with what passed, says
	// which phases failed and why, and run returns their errors.
	var failures []failure
	phase := func(name string, t0 time.Time, err error) bool {
		dur := time.Since(t0)
		if err != nil {
			failures = append(failures, failure{phase: name, err: err})
			d.Timings = append(d.Timings, report.Timing{Phase: name + " (FAILED)", Duration: dur})
			log.Error("phase failed", "phase", name, "duration", dur.Round(time.Millisecond), "err", err)
			return false
		}
		d.Timings = append(d.Timings, report.Timing{Phase: name, Duration: dur})
		log.Info("done", "phase", name, "duration", dur.Round(time.Millisecond))
		return true
	}
	e := &env{opts: o, data: d, log: log}

	// 1. The package set.
	t0 := time.Now()
	if o.synthetic {
		n := 400
		if o.quick {
			n = 120
		}
		e.universe = sim.Synthetic(1, n)
		d.Corpus = fmt.Sprintf("%s, %d store paths (NOT the real Debian corpus)", e.universe.Name, e.universe.Graph.Len())
		err = e.universe.Validate()
	} else {
		err = buildCorpus(ctx, e)
	}
	if !phase("corpus", t0, err) {
		e.corpus, e.universe = nil, nil
	}

	// 2. Workloads and the compressed size of every store path they use,
	// and 3. the layer-sharing simulation.
	if e.universe != nil {
		t0 = time.Now()
		if phase("compressed sizes", t0, workloadSizes(ctx, e)) {
			t0 = time.Now()
			d.Outcome, err = e.sw.Run(e.universe, e.workloads, e.sizes)
			if !phase("simulation", t0, err) {
				d.Outcome = nil
			}
		} else {
			e.workloads = nil
		}
	}

	// 4. Speed (speed.go), HTTP serving (http.go), real pulls (pull.go),
	// the storage limit (storage.go), the per-layer cost (pullcost.go):
	// each skips itself when a phase it needs did not pass.
	for _, st := range stages {
		t0 = time.Now()
		phase(st.name, t0, st.run(ctx, e))
	}

	d.Timings = append(d.Timings, report.Timing{Phase: "total", Duration: time.Since(start)})
	if len(failures) > 0 {
		var b strings.Builder
		b.WriteString("These phases failed; the results above and below come from the phases that passed.\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- **%s**: %s\n", f.phase, strings.ReplaceAll(strings.TrimSpace(f.err.Error()), "\n", " "))
		}
		d.Sections = append([]report.Section{{Title: "Failed phases", Body: b.String()}}, d.Sections...)
	}
	if err := report.Write(o.out, d); err != nil {
		return err
	}
	attrs := []any{"dir", o.out, "total", time.Since(start).Round(time.Millisecond)}
	if d.Outcome != nil {
		chk := report.CheckTargets(d.Outcome, sim.Ours)
		attrs = append(attrs, "wins", fmt.Sprintf("%d/%d", chk.Wins, chk.Cells), "worst_ratio_at_max_budget", fmt.Sprintf("%.3f", chk.WorstAtMax))
	}
	log.Info("report written", attrs...)
	if len(failures) > 0 {
		errs := make([]error, len(failures))
		for i, f := range failures {
			errs[i] = fmt.Errorf("%s: %w", f.phase, f.err)
		}
		return errors.Join(errs...)
	}
	return nil
}

// failure is a phase that failed.
type failure struct {
	phase string
	err   error
}

// buildCorpus builds the Debian corpus into e.corpus and e.universe.
func buildCorpus(ctx context.Context, e *env) error {
	o := e.opts
	wd := o.workDir
	if wd == "" {
		wd = filepath.Join(userCache(), "nixery-bench-corpus")
		if o.quick {
			wd += "-quick"
		}
	}
	c, err := corpus.Build(ctx, corpus.Options{Quick: o.quick, WorkDir: wd, Logger: e.log})
	if err != nil {
		return err
	}
	u := fromCorpus(c)
	if err := u.Validate(); err != nil {
		return err
	}
	e.corpus, e.universe = c, u
	mode := "full"
	if o.quick {
		mode = "quick"
	}
	e.data.Corpus = fmt.Sprintf("real Debian corpus (%s: %d store paths, %.2f GB NAR)", mode, c.Graph.Len(), float64(c.Bytes)/1e9)
	return nil
}

// workloadSizes makes the workloads and measures the compressed size of
// every store path they use.
func workloadSizes(ctx context.Context, e *env) error {
	o, u, d := e.opts, e.universe, e.data
	e.sw = sim.Sweep{Images: o.images}
	for s := 1; s <= o.seeds; s++ {
		e.sw.Seeds = append(e.sw.Seeds, uint64(s))
	}
	workloads, err := e.sw.Workloads(u)
	if err != nil {
		return err
	}
	paths, err := sim.Paths(u, workloads)
	if err != nil {
		return err
	}
	if o.synthetic {
		e.sizes = sim.SyntheticSizes(u)
		d.Sizes = "synthetic: a third of the NAR size, varied by ±20% per path"
	} else {
		cacheDir := o.cacheDir
		if cacheDir == "" {
			cacheDir = filepath.Join(userCache(), "nixery-bench-members")
		}
		sizes, format, err := measureSizes(ctx, cacheDir, paths, e.log)
		if err != nil {
			return err
		}
		var raw, comp int64
		for _, p := range paths {
			q, _ := u.Graph.Lookup(p)
			raw += q.NarSize
			comp += sizes.Paths[p]
		}
		e.sizes = sizes
		d.Sizes = fmt.Sprintf("measured exactly as nixery serves them: each of the %d store paths used compressed once by layers.Assembler (format %s; %.2f GB NAR -> %.2f GB), a layer being its paths' members plus %d bytes",
			len(paths), format, float64(raw)/1e9, float64(comp)/1e9, sizes.Overhead)
	}
	e.workloads = workloads
	return nil
}

// env is what a later stage of the harness gets. A stage needing what a
// failed phase would have made finds it nil and skips itself (corpus is
// nil with -synthetic or when the corpus failed; universe when the
// corpus failed; workloads when the sizes failed).
type env struct {
	opts      *options
	corpus    *corpus.Corpus
	universe  *sim.Universe
	sw        sim.Sweep
	workloads []sim.Workload
	sizes     sim.Sizes
	data      *report.Data
	log       *slog.Logger
	archive   *archive // loaded by the first stage that needs it (archiveCorpus)
}

// stage is an optional part of the harness, in a file of its own.
type stage struct {
	name string
	run  func(ctx context.Context, e *env) error
}

// stages run after the simulation, in this order.
var stages = []stage{
	{name: "archive corpus", run: runArchive},  // archive.go
	{name: "package updates", run: runUpdates}, // update.go
	{name: "speed", run: runSpeed},             // speed.go
	{name: "http", run: runHTTP},               // http.go
	{name: "real pulls", run: runPull},         // pull.go
	{name: "per-layer cost", run: runPullCost}, // pullcost.go
	{name: "storage limit", run: runStorage},   // storage.go
}

// fromCorpus adapts a corpus to the simulation.
func fromCorpus(c *corpus.Corpus) *sim.Universe {
	u := &sim.Universe{
		Name:       "debian corpus",
		Graph:      c.Graph,
		Popularity: c.Popularity,
		Packages:   map[string]string{},
	}
	for a, p := range c.Packages {
		u.Packages[a] = p
	}
	for _, alias := range []string{"bashInteractive", "coreutils", "moreutils", "nano"} {
		attr := alias
		if t, ok := c.Aliases[alias]; ok {
			attr = t
		}
		if p, ok := c.Packages[attr]; ok {
			u.Packages[alias] = p // the meta-package's own names
			u.Shell = append(u.Shell, alias)
			if attr != alias {
				delete(u.Packages, attr) // one name per store path
			}
		}
	}
	for _, a := range []string{corpus.AttrCacert, corpus.AttrIanaEtc} {
		if _, ok := c.Packages[a]; ok {
			u.Always = append(u.Always, a)
		}
	}
	return u
}

// measureSizes returns the exact compressed size of every path as nixery's
// layers package builds it (sim.MeasureSizes), with a layers.Assembler
// caching in cacheDir (kept across runs: store paths never change).
func measureSizes(ctx context.Context, cacheDir string, paths []string, log *slog.Logger) (sim.Sizes, string, error) {
	store, err := layers.NewFSStore(filepath.Join(cacheDir, "store"))
	if err != nil {
		return sim.Sizes{}, "", err
	}
	asm, err := layers.NewAssembler(store, filepath.Join(cacheDir, "cache"), layers.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return sim.Sizes{}, "", err
	}
	sizes, err := sim.MeasureSizes(ctx, asm, paths, runtime.GOMAXPROCS(0))
	if err != nil {
		return sim.Sizes{}, "", err
	}
	log.Info("sizes measured", "paths", len(paths), "cache", cacheDir)
	return sizes, asm.Format(), nil
}

func userCache() string {
	if d, err := os.UserCacheDir(); err == nil {
		return d
	}
	return os.TempDir()
}
