// Package report writes the benchmark harness's results: a Markdown file
// with the tables and SVG plots it links to.
//
// [Write] produces, in one directory:
//
//   - results.md: how the results were made (command, date, corpus), the
//     pull ratio (pull bytes over the ideal) of every algorithm per workload
//     shape and budget, the check of the project's targets, registry bytes,
//     per-workload details, and any extra sections (speed, real pulls);
//   - pull-ratio.svg: pull ratio against budget, one line per algorithm, one
//     panel per workload shape; docker-ratio.svg the same under the Docker
//     engine's chain rule;
//   - throughput.svg, when throughput figures are given: one bar per
//     measurement.
package report

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nixery-go/nixery/benchmarks/sim"
)

// Data is everything a report shows.
type Data struct {
	// Command is the command line that produced the results.
	Command string
	// Date is when the run started.
	Date time.Time
	// Corpus describes the package set, for example "real Debian corpus
	// (742 store paths, 4.3 GB)".
	Corpus string
	// Sizes says how compressed sizes were measured.
	Sizes string
	// Outcome is the layer-sharing simulation.
	Outcome *sim.Outcome
	// Algorithms and Budgets are listed in this order; Ours is highlighted
	// and checked against the targets.
	Algorithms []string
	Budgets    []int
	Ours       string
	// Throughput, optional, becomes throughput.svg and a table.
	Throughput []Bar
	// Sections are extra Markdown sections appended in order.
	Sections []Section
	// Timings lists how long the phases of the run took.
	Timings []Timing
	// Model is the pull-time model of the modelled pull time tables; the
	// zero value means sim.DefaultPullModel.
	Model sim.PullModel
	// Corpora are further package sets, each a section after the main
	// one's.
	Corpora []Corpus
}

// Bar is one throughput measurement.
type Bar struct {
	Name string
	MBps float64
}

// Section is a titled block of Markdown.
type Section struct {
	Title string
	Body  string
}

// Timing is the duration of one phase of the run.
type Timing struct {
	Phase    string
	Duration time.Duration
}

// Files written by [Write].
const (
	MarkdownFile   = "results.md"
	PullRatioFile  = "pull-ratio.svg"
	DockerFile     = "docker-ratio.svg"
	ThroughputFile = "throughput.svg"
)

// Ratios aggregates one algorithm at one budget over the seeds of a shape:
// total pull bytes over total ideal bytes.
type Ratios struct {
	Pull, Chain, Ideal int64
}

// ChainRatio is Chain / Ideal.
func (c Ratios) ChainRatio() float64 {
	if c.Ideal == 0 {
		return 0
	}
	return float64(c.Chain) / float64(c.Ideal)
}

// Ratio is Pull / Ideal.
func (c Ratios) Ratio() float64 {
	if c.Ideal == 0 {
		return 0
	}
	return float64(c.Pull) / float64(c.Ideal)
}

// Aggregate sums the results by shape, algorithm and budget.
func Aggregate(o *sim.Outcome) map[sim.Shape]map[string]map[int]Ratios {
	out := map[sim.Shape]map[string]map[int]Ratios{}
	for _, r := range o.Results {
		if out[r.Shape] == nil {
			out[r.Shape] = map[string]map[int]Ratios{}
		}
		if out[r.Shape][r.Algorithm] == nil {
			out[r.Shape][r.Algorithm] = map[int]Ratios{}
		}
		c := out[r.Shape][r.Algorithm][r.Budget]
		c.Pull += r.PullBytes
		c.Chain += r.ChainBytes
		c.Ideal += r.IdealBytes
		out[r.Shape][r.Algorithm][r.Budget] = c
	}
	return out
}

// Check is the verdict on the targets: the project's algorithm has the
// lowest pull bytes of all comparators on every workload at every budget,
// and is within MaxIdealRatio of the ideal at the largest budget.
type Check struct {
	Cells, Wins int      // (workload, budget) pairs, and those ours wins
	Losses      []string // "workload@budget: algorithm x.xxx < ours y.yyy"
	// WorstAtMax is our worst pull ratio at the largest budget.
	WorstAtMax float64
	MaxBudget  int
}

// MaxIdealRatio is the target for our pull ratio at the largest budget.
const MaxIdealRatio = 1.10

// OK reports whether both targets are met.
func (c Check) OK() bool { return c.Wins == c.Cells && c.WorstAtMax <= MaxIdealRatio }

// CheckTargets compares ours with every other algorithm on every workload
// and budget. A tie counts as a win: ours is then among the lowest.
func CheckTargets(o *sim.Outcome, ours string) Check {
	c := Check{}
	c.Wins, c.Cells, c.Losses = cellWins(o, ours, func(r sim.Result) float64 { return float64(r.PullBytes) }, func(best, mine sim.Result) string {
		return fmt.Sprintf("%s %.3f < %s %.3f", best.Algorithm, best.PullRatio(), ours, mine.PullRatio())
	})
	for _, r := range o.Results {
		if r.Algorithm == ours {
			c.MaxBudget = max(c.MaxBudget, r.Budget)
		}
	}
	for _, r := range o.Results {
		if r.Algorithm == ours && r.Budget == c.MaxBudget {
			c.WorstAtMax = math.Max(c.WorstAtMax, r.PullRatio())
		}
	}
	return c
}

// Write writes the report files into dir, creating it.
func Write(dir string, d *Data) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	if err := Markdown(&md, d); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, MarkdownFile), []byte(md.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, PullRatioFile), []byte(PullRatioSVG(d)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, DockerFile), []byte(DockerRatioSVG(d)), 0o644); err != nil {
		return err
	}
	tp := filepath.Join(dir, ThroughputFile)
	if len(d.Throughput) > 0 {
		return os.WriteFile(tp, []byte(ThroughputSVG(d.Throughput)), 0o644)
	}
	if err := os.Remove(tp); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// Cell escapes s for a Markdown table cell: a "|" would end the cell.
func Cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/1e6) }

// Markdown renders the report.
func Markdown(w io.Writer, d *Data) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# nixery benchmark results\n\n")
	p("- Command: `%s`\n", d.Command)
	p("- Date: %s\n", d.Date.UTC().Format(time.RFC3339))
	p("- Corpus: %s\n", d.Corpus)
	if d.Sizes != "" {
		p("- Compressed sizes: %s\n", d.Sizes)
	}
	if d.Outcome != nil {
		shapes := map[sim.Shape]bool{}
		nw, ni := 0, 0
		for _, r := range d.Outcome.Results {
			if r.Algorithm == d.Ours && r.Budget == d.Budgets[0] {
				nw++
				ni += r.Images
				shapes[r.Shape] = true
			}
		}
		p("- Workloads: %d (%d shapes x seeds), %d images in all\n", nw, len(shapes), ni)
	}
	for _, t := range d.Timings {
		p("- %s: %s\n", t.Phase, t.Duration.Round(time.Millisecond))
	}
	p("\n")
	if d.Outcome != nil {
		writeSharing(&b, d)
	}
	for _, c := range d.Corpora {
		if c.Outcome != nil {
			writeCorpus(&b, d, c)
		}
	}
	if len(d.Throughput) > 0 {
		p("## Throughput\n\n![throughput](%s)\n\n| measurement | MB/s |\n|---|---:|\n", ThroughputFile)
		for _, t := range d.Throughput {
			p("| %s | %.1f |\n", Cell(t.Name), t.MBps)
		}
		p("\n")
	}
	for _, s := range d.Sections {
		p("## %s\n\n%s\n\n", s.Title, strings.TrimSpace(s.Body))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSharing(b *strings.Builder, d *Data) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	agg := Aggregate(d.Outcome)
	shapes := make([]sim.Shape, 0, len(agg))
	for _, s := range sim.Shapes {
		if agg[s] != nil {
			shapes = append(shapes, s)
		}
	}
	p("## Layer sharing: pull bytes / ideal\n\n")
	p("A client pulls each workload's images in order and downloads the layers it does not hold yet;\n")
	p("the ideal downloads every store path once. Each cell sums the seeds of a shape; lower is better,\n")
	p("the best of each row is bold. Budget = store-path layers per image.\n\n")
	p("![pull ratio](%s)\n\n", PullRatioFile)
	ratioTable(b, d, shapes, agg, Ratios.Ratio)
	c := CheckTargets(d.Outcome, d.Ours)
	p("\n### Targets\n\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	p("- %s has the lowest pull bytes on %d of %d (workload, budget) cells (ties count as lowest): %s.\n",
		d.Ours, c.Wins, c.Cells, verdict(c.Wins == c.Cells))
	for _, l := range c.Losses {
		p("  - lost: %s\n", l)
	}
	p("- Worst pull ratio of %s at budget %d: %.3f (target <= %.2f): %s.\n\n",
		d.Ours, c.MaxBudget, c.WorstAtMax, MaxIdealRatio, verdict(c.WorstAtMax <= MaxIdealRatio))

	p("## Docker engine: pull bytes / ideal\n\n")
	p("The same pulls under the rule of the Docker engine with its classic image store, which keeps layers by\n")
	p("chain: it skips the longest prefix of an image's layers that an earlier image also starts with and downloads\n")
	p("every later layer, even one it already holds under another chain. Layer order counts here.\n\n")
	p("![Docker pull ratio](%s)\n\n", DockerFile)
	ratioTable(b, d, shapes, agg, Ratios.ChainRatio)
	p("\n")
	writePullTime(b, d, d.Outcome, "##")

	p("## Registry bytes / ideal\n\n")
	p("A registry serving every workload stores each distinct layer once; the ideal stores every store path once.\n\n")
	p("| algorithm |")
	for _, bu := range d.Budgets {
		p(" %d |", bu)
	}
	p("\n|---|%s\n", strings.Repeat("---:|", len(d.Budgets)))
	reg := map[string]map[int]sim.Registry{}
	for _, r := range d.Outcome.Registry {
		if reg[r.Algorithm] == nil {
			reg[r.Algorithm] = map[int]sim.Registry{}
		}
		reg[r.Algorithm][r.Budget] = r
	}
	for _, a := range d.Algorithms {
		p("| %s |", a)
		for _, bu := range d.Budgets {
			p(" %.3f |", reg[a][bu].Ratio())
		}
		p("\n")
	}
	p("\n## Per workload\n\n")
	p("Pull s is the modelled pull time (%s).\n\n", d.model())
	p("| workload | budget | algorithm | images | pull MB | ideal MB | ratio | pull s | layers pulled | Docker MB | Docker ratio | distinct layers | layers/image max | mean | grouping µs/image |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	rs := append([]sim.Result(nil), d.Outcome.Results...)
	order := map[string]int{}
	for i, a := range d.Algorithms {
		order[a] = i
	}
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Workload != rs[j].Workload {
			return rs[i].Workload < rs[j].Workload
		}
		if rs[i].Budget != rs[j].Budget {
			return rs[i].Budget < rs[j].Budget
		}
		return order[rs[i].Algorithm] < order[rs[j].Algorithm]
	})
	for _, r := range rs {
		per := float64(r.GroupTime.Microseconds()) / float64(max(r.Images, 1))
		p("| %s | %d | %s | %d | %s | %s | %.3f | %.1f | %d | %s | %.3f | %d | %d | %.1f | %.0f |\n", r.Workload, r.Budget, r.Algorithm,
			r.Images, mb(r.PullBytes), mb(r.IdealBytes), r.PullRatio(), r.PullTime(d.model()).Seconds(), r.PullLayers, mb(r.ChainBytes), r.ChainRatio(), r.Layers, r.MaxLayers, r.MeanLayers, per)
	}
	p("\n")
}

// ratioTable writes one row per shape and budget and one column per
// algorithm of the ratio f, the lowest of each row in bold.
func ratioTable(b *strings.Builder, d *Data, shapes []sim.Shape, agg map[sim.Shape]map[string]map[int]Ratios, f func(Ratios) float64) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("| workload | budget |")
	for _, a := range d.Algorithms {
		p(" %s |", a)
	}
	p("\n|---|---:|%s\n", strings.Repeat("---:|", len(d.Algorithms)))
	for _, s := range shapes {
		for _, bu := range d.Budgets {
			if agg[s][d.Ours] == nil {
				continue
			}
			p("| %s | %d |", s, bu)
			best := math.Inf(1)
			for _, a := range d.Algorithms {
				best = math.Min(best, f(agg[s][a][bu]))
			}
			for _, a := range d.Algorithms {
				r := f(agg[s][a][bu])
				if r == best {
					p(" **%.3f** |", r)
				} else {
					p(" %.3f |", r)
				}
			}
			p("\n")
		}
	}
}
