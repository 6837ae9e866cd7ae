package report

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/benchmarks/sim"
)

func outcome() *sim.Outcome {
	r := func(w string, s sim.Shape, a string, b int, pull, ideal int64) sim.Result {
		return sim.Result{Workload: w, Shape: s, Algorithm: a, Budget: b, Images: 2, PullBytes: pull, IdealBytes: ideal, Layers: 3, MaxLayers: 2, MeanLayers: 1.5}
	}
	return &sim.Outcome{
		Results: []sim.Result{
			r("many-small/1", sim.ManySmall, "them", 10, 300, 100),
			r("many-small/1", sim.ManySmall, "us", 10, 150, 100),
			r("many-small/2", sim.ManySmall, "them", 10, 100, 100),
			r("many-small/2", sim.ManySmall, "us", 10, 120, 100),
			r("many-small/1", sim.ManySmall, "them", 100, 100, 100),
			r("many-small/1", sim.ManySmall, "us", 100, 100, 100),
			r("many-small/2", sim.ManySmall, "them", 100, 100, 100),
			r("many-small/2", sim.ManySmall, "us", 100, 105, 100),
		},
		Registry: []sim.Registry{{Algorithm: "us", Budget: 10, Bytes: 200, IdealBytes: 100}},
	}
}

func TestCheckTargets(t *testing.T) {
	c := CheckTargets(outcome(), "us")
	if c.Cells != 4 || c.Wins != 2 || len(c.Losses) != 2 {
		t.Errorf("Check = %+v", c)
	}
	if c.MaxBudget != 100 || c.WorstAtMax != 1.05 {
		t.Errorf("worst at max = %v at %d", c.WorstAtMax, c.MaxBudget)
	}
	if !strings.HasPrefix(c.Losses[0], "many-small/2@10: them 1.000 < us 1.200") {
		t.Errorf("loss %q", c.Losses[0])
	}
	if c.OK() {
		t.Error("OK with losses")
	}
	agg := Aggregate(outcome())
	if got := agg[sim.ManySmall]["us"][10]; got.Pull != 270 || got.Ideal != 200 || got.Ratio() != 1.35 {
		t.Errorf("aggregate = %+v", got)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	d := &Data{
		Command: "go run ./benchmarks/cmd/harness", Date: time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC),
		Corpus: "test", Outcome: outcome(), Algorithms: []string{"them", "us"}, Budgets: []int{10, 100}, Ours: "us",
		Throughput: []Bar{{"nixery cold", 250}, {"tar | gzip -6", 30}},
		Sections:   []Section{{Title: "Real pulls", Body: "agree within 0.1%"}},
	}
	if err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- Date: 2026-11-27T05:00:00Z",
		"| many-small | 10 | 2.000 | **1.350** |",
		"| many-small | 100 | **1.000** | 1.025 |",
		"has the lowest pull bytes on 2 of 4",
		"NOT met",
		"| nixery cold | 250.0 |",
		"| tar \\| gzip -6 | 30.0 |",
		"## Real pulls\n\nagree within 0.1%",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{PullRatioFile, DockerFile, ThroughputFile} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(data, new(struct{})); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// Without throughput figures, a stale throughput.svg is removed.
	d.Throughput = nil
	if err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ThroughputFile)); !os.IsNotExist(err) {
		t.Errorf("stale %s kept: %v", ThroughputFile, err)
	}
}

func TestCorpusAndSensitivity(t *testing.T) {
	o := outcome()
	// Layers pulled: "them" 2 per result, "us" 1, so with 1 s per layer and
	// 100 bytes/s, us@many-small/1@10 takes 150/100 + 1 = 2.5 s.
	for i := range o.Results {
		o.Results[i].PullLayers = 1
		if o.Results[i].Algorithm == "them" {
			o.Results[i].PullLayers = 2
		}
	}
	m := sim.PullModel{Bandwidth: 100, PerLayer: time.Second}
	if got := o.Results[1].PullTime(m); got != 2500*time.Millisecond {
		t.Errorf("PullTime = %v", got)
	}
	wins, cells, losses := TimeCheck(o, "us", m)
	// many-small/1@10: them 5 s, us 2.5 s; /2@10: them 3 s, us 2.2 s;
	// /1@100: them 3 s, us 2 s; /2@100: them 3 s, us 2.05 s.
	if wins != 4 || cells != 4 || len(losses) != 0 {
		t.Errorf("TimeCheck = %d/%d %v", wins, cells, losses)
	}
	d := &Data{Command: "x", Corpus: "main", Algorithms: []string{"them", "us"}, Budgets: []int{10, 100}, Ours: "us", Model: m,
		Corpora: []Corpus{{Title: "Big corpus", Description: "held out", Outcome: o, Targets: map[int]float64{100: 1.10, 10: 1.30}}}}
	var b strings.Builder
	if err := Markdown(&b, d); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## Big corpus\n\nheld out",
		"- Worst pull ratio of us at budget 100: 1.025 (many-small; target <= 1.10): met.",
		"- Worst pull ratio of us at budget 10: 1.350 (many-small; target <= 1.30): NOT met.",
		"(0.0001 MB/s + 1s/layer;",
		"| many-small | 10 | 8.0 | **4.7** |",
		"- us has the lowest modelled pull time on 4 of 4",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	// Sensitivity: "us" has the lowest bytes in 2 of 4 cells against
	// "them", the lowest time in all 4, and under the chain rule (bytes
	// below) wins many-small/1@10 and ties many-small/1@100: 2 of 4, and
	// a chain ratio of (200+180)/200 at budget 10.
	chain := map[string][]int64{"us": {200, 180, 100, 110}, "them": {250, 150, 100, 100}}
	for i := range o.Results {
		r := &o.Results[i]
		r.ChainBytes = chain[r.Algorithm][0]
		chain[r.Algorithm] = chain[r.Algorithm][1:]
	}
	tab := Sensitivity(o, []string{"us"}, []string{"variant us"}, []string{"them"}, []int{10}, m, false)
	if !strings.Contains(tab, "| variant us | 2/4 | 4/4 | 2/4 | 1.350 |") {
		t.Errorf("sensitivity table:\n%s", tab)
	}
	tab = Sensitivity(o, []string{"us"}, []string{"variant us"}, []string{"them"}, []int{10}, m, true)
	if !strings.Contains(tab, "| variant us | 2/4 | 4/4 | 2/4 | 1.900 |") {
		t.Errorf("chain-rule sensitivity table:\n%s", tab)
	}
}

// TestBounds renders the bounds of many-small beside the outcome's figures
// at budget 100: chain bytes are 0 in outcome(), so both ratios are 0.
func TestBounds(t *testing.T) {
	o := outcome()
	for i := range o.Results {
		o.Results[i].PullLayers = 1
	}
	m := sim.PullModel{Bandwidth: 100, PerLayer: time.Second}
	sizes := sim.Sizes{Overhead: 10}
	bounds := []sim.Bound{
		{Workload: "many-small/1", Shape: sim.ManySmall, IdealBytes: 100, ChainBytes: 150, IdealLayers: 1},
		{Workload: "many-small/2", Shape: sim.ManySmall, IdealBytes: 100, ChainBytes: 110, IdealLayers: 2},
	}
	tab := Bounds(o, bounds, "us", 100, sizes, m)
	// Chain bound 260/200; the bounds' time (100+10)/100 + 1 + (100+20)/100
	// + 2 = 5.3 s; us at 100: 1+1 + 1.05+1 = 4.05 s; them 2+2 = 4 s.
	if want := "| many-small | 0 | 1.300 | 0.000 | 0.000 (them) | 3 | 5.3 | 4.0 | 4.0 (them) |"; !strings.Contains(tab, want) {
		t.Errorf("bounds table lacks %q:\n%s", want, tab)
	}
	if strings.Contains(tab, "few-large") {
		t.Errorf("a shape without bounds has a row:\n%s", tab)
	}
}
