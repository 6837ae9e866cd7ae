package report

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/nixery-go/nixery/benchmarks/sim"
)

// Corpus is a further package set simulated next to the main one (the
// archive corpus of issue 14, on held-out seeds).
type Corpus struct {
	// Title heads its section; Description says what it is and how its
	// workloads were chosen.
	Title, Description string
	Outcome            *sim.Outcome
	// Targets are the pull ratios ours must stay within, by budget.
	Targets map[int]float64
	// Sections are extra sections shown under the corpus (a sensitivity
	// table).
	Sections []Section
}

// ArchiveTargets are issue 14's targets on the large corpus: at most 1.10x
// the ideal at budget 100, 1.30x at 40 and 1.45x at 20.
var ArchiveTargets = map[int]float64{100: 1.10, 40: 1.30, 20: 1.45}

// Times aggregates modelled pull times by shape, algorithm and budget
// (sums over the seeds of a shape).
func Times(o *sim.Outcome, m sim.PullModel) map[sim.Shape]map[string]map[int]time.Duration {
	out := map[sim.Shape]map[string]map[int]time.Duration{}
	for _, r := range o.Results {
		if out[r.Shape] == nil {
			out[r.Shape] = map[string]map[int]time.Duration{}
		}
		if out[r.Shape][r.Algorithm] == nil {
			out[r.Shape][r.Algorithm] = map[int]time.Duration{}
		}
		out[r.Shape][r.Algorithm][r.Budget] += r.PullTime(m)
	}
	return out
}

// TimeCheck counts the (workload, budget) cells where ours has the lowest
// modelled pull time of all algorithms (ties count as lowest).
func TimeCheck(o *sim.Outcome, ours string, m sim.PullModel) (wins, cells int, losses []string) {
	return cellWins(o, ours, func(r sim.Result) float64 { return float64(r.PullTime(m)) }, func(best, mine sim.Result) string {
		return fmt.Sprintf("%s %.1f s < %s %.1f s", best.Algorithm, best.PullTime(m).Seconds(), ours, mine.PullTime(m).Seconds())
	})
}

// cellWins counts the (workload, budget) cells of o where ours has the
// lowest cost of all algorithms (ties count as lowest), and describes each
// cell it loses as "workload@budget: " and loss(the best other, ours), in
// the order of ours' results.
func cellWins(o *sim.Outcome, ours string, cost func(sim.Result) float64, loss func(best, mine sim.Result) string) (wins, cells int, losses []string) {
	type key struct {
		w string
		b int
	}
	best := map[key]sim.Result{}
	var mine []sim.Result
	for _, r := range o.Results {
		k := key{r.Workload, r.Budget}
		if r.Algorithm == ours {
			mine = append(mine, r)
			continue
		}
		if b, ok := best[k]; !ok || cost(r) < cost(b) {
			best[k] = r
		}
	}
	for _, m := range mine {
		cells++
		if b, ok := best[key{m.Workload, m.Budget}]; ok && cost(b) < cost(m) {
			losses = append(losses, fmt.Sprintf("%s@%d: %s", m.Workload, m.Budget, loss(b, m)))
		} else {
			wins++
		}
	}
	return wins, cells, losses
}

// timeTable writes the modelled pull time (seconds, summed over the seeds)
// of every algorithm per shape and budget, the lowest of each row in bold.
func timeTable(b *strings.Builder, d *Data, o *sim.Outcome) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	tm := Times(o, d.model())
	p("| workload | budget |")
	for _, a := range d.Algorithms {
		p(" %s |", a)
	}
	p("\n|---|---:|%s\n", strings.Repeat("---:|", len(d.Algorithms)))
	for _, s := range sim.Shapes {
		if tm[s] == nil {
			continue
		}
		for _, bu := range d.Budgets {
			p("| %s | %d |", s, bu)
			best := time.Duration(math.MaxInt64)
			for _, a := range d.Algorithms {
				best = min(best, tm[s][a][bu])
			}
			for _, a := range d.Algorithms {
				if v := tm[s][a][bu]; v == best {
					p(" **%.1f** |", v.Seconds())
				} else {
					p(" %.1f |", v.Seconds())
				}
			}
			p("\n")
		}
	}
}

func (d *Data) model() sim.PullModel {
	if d.Model.Bandwidth == 0 && d.Model.PerLayer == 0 {
		return sim.DefaultPullModel
	}
	return d.Model
}

// writePullTime is the modelled pull time section of an outcome.
func writePullTime(b *strings.Builder, d *Data, o *sim.Outcome, level string) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	m := d.model()
	p("%s Modelled pull time (s)\n\n", level)
	p("Each workload's pulls cost their bytes over the bandwidth plus a fixed cost per layer downloaded\n")
	p("(%s; set with the harness's -bandwidth and -per-layer flags). Sums over the seeds of a shape; lower is better.\n\n", m)
	timeTable(b, d, o)
	wins, cells, losses := TimeCheck(o, d.Ours, m)
	p("\n- %s has the lowest modelled pull time on %d of %d (workload, budget) cells.\n", d.Ours, wins, cells)
	for _, l := range losses {
		p("  - lost: %s\n", l)
	}
	p("\n")
}

// writeCorpus renders a further corpus: its pull ratios, targets, Docker
// ratios and modelled pull times.
func writeCorpus(b *strings.Builder, d *Data, c Corpus) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## %s\n\n%s\n\n", c.Title, strings.TrimSpace(c.Description))
	agg := Aggregate(c.Outcome)
	var shapes []sim.Shape
	for _, s := range sim.Shapes {
		if agg[s] != nil {
			shapes = append(shapes, s)
		}
	}
	p("### Pull bytes / ideal\n\n")
	ratioTable(b, d, shapes, agg, Ratios.Ratio)
	chk := CheckTargets(c.Outcome, d.Ours)
	p("\n- %s has the lowest pull bytes on %d of %d (workload, budget) cells (ties count as lowest).\n", d.Ours, chk.Wins, chk.Cells)
	for _, l := range chk.Losses {
		p("  - lost: %s\n", l)
	}
	budgets := make([]int, 0, len(c.Targets))
	for bu := range c.Targets {
		budgets = append(budgets, bu)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(budgets)))
	for _, bu := range budgets {
		worst, where := 0.0, ""
		for _, s := range shapes {
			if r := agg[s][d.Ours][bu].Ratio(); r > worst {
				worst, where = r, string(s)
			}
		}
		verdict := "met"
		if worst > c.Targets[bu] {
			verdict = "NOT met"
		}
		p("- Worst pull ratio of %s at budget %d: %.3f (%s; target <= %.2f): %s.\n", d.Ours, bu, worst, where, c.Targets[bu], verdict)
	}
	p("\n### Docker engine (chain rule): pull bytes / ideal\n\n")
	ratioTable(b, d, shapes, agg, Ratios.ChainRatio)
	p("\n")
	writePullTime(b, d, c.Outcome, "###")
	for _, s := range c.Sections {
		p("### %s\n\n%s\n\n", s.Title, strings.TrimSpace(s.Body))
	}
}

// Sensitivity renders a sensitivity table: for each variant of ours (an
// algorithm name in o), the cells where it has the lowest pull bytes, the
// lowest modelled pull time (model m) and the lowest bytes under the Docker
// engine's chain rule against the other comparators in o, and its ratio per
// shape at each budget: the pull ratio, or with chain the chain rule's.
// others are the comparators.
func Sensitivity(o *sim.Outcome, variants, labels, others []string, budgets []int, m sim.PullModel, chain bool) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	agg := Aggregate(o)
	p("| %s | bytes wins | time wins | chain-rule wins |", "variant")
	for _, s := range sim.Shapes {
		for _, bu := range budgets {
			p(" %s@%d |", s, bu)
		}
	}
	p("\n|---|---:|---:|---:|%s\n", strings.Repeat("---:|", len(sim.Shapes)*len(budgets)))
	for i, v := range variants {
		sub := &sim.Outcome{}
		for _, r := range o.Results {
			if r.Algorithm == v || contains(others, r.Algorithm) {
				sub.Results = append(sub.Results, r)
			}
		}
		chk := CheckTargets(sub, v)
		tw, tc, _ := TimeCheck(sub, v, m)
		cw, cc, _ := cellWins(sub, v, func(r sim.Result) float64 { return float64(r.ChainBytes) }, func(_, _ sim.Result) string { return "" })
		p("| %s | %d/%d | %d/%d | %d/%d |", labels[i], chk.Wins, chk.Cells, tw, tc, cw, cc)
		for _, s := range sim.Shapes {
			for _, bu := range budgets {
				r := agg[s][v][bu]
				if chain {
					p(" %.3f |", r.ChainRatio())
				} else {
					p(" %.3f |", r.Ratio())
				}
			}
		}
		p("\n")
	}
	return b.String()
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// Bounds renders the offline bounds of each shape (sums over its seeds,
// [sim.Bounds]) beside ours and the best other algorithm of o at budget:
// the chain rule's ratio, and the modelled pull time of the ideal bytes in
// the fewest layers that download no path twice.
func Bounds(o *sim.Outcome, bounds []sim.Bound, ours string, budget int, sizes sim.Sizes, m sim.PullModel) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	agg := Aggregate(o)
	times := Times(o, m)
	p("| shape | ideal MB | chain rule: bound | %s@%d | best other@%d | fewest layers without a second download | their modelled time, s | %s@%d, s | best other@%d, s |\n", ours, budget, budget, ours, budget, budget)
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sim.Shapes {
		var ideal, chain int64
		layers := 0
		var idealTime float64
		for _, bd := range bounds {
			if bd.Shape == s {
				ideal += bd.IdealBytes
				chain += bd.ChainBytes
				layers += bd.IdealLayers
				idealTime += bd.IdealTime(m, sizes)
			}
		}
		if ideal == 0 {
			continue
		}
		bestChain, bestTime := "", ""
		bc, bt := 0.0, 0.0
		for a, byBudget := range agg[s] {
			if a == ours {
				continue
			}
			if c := byBudget[budget].ChainRatio(); bestChain == "" || c < bc || c == bc && a < bestChain {
				bestChain, bc = a, c
			}
			if t := times[s][a][budget].Seconds(); bestTime == "" || t < bt || t == bt && a < bestTime {
				bestTime, bt = a, t
			}
		}
		p("| %s | %.0f | %.3f | %.3f | %.3f (%s) | %d | %.1f | %.1f | %.1f (%s) |\n", s, float64(ideal)/1e6, float64(chain)/float64(ideal),
			agg[s][ours][budget].ChainRatio(), bc, bestChain, layers, idealTime, times[s][ours][budget].Seconds(), bt, bestTime)
	}
	return b.String()
}
