package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/benchmarks/report"
	"github.com/nixery-go/nixery/benchmarks/sim"
)

// TestQuickSyntheticRun runs the harness end to end in quick mode on the
// synthetic package set and checks the report files it writes. The storage
// stage, which runs nixery serve, is left to the harness run of CI and to
// benchmarks/storage's own test.
func TestQuickSyntheticRun(t *testing.T) {
	out := t.TempDir()
	var log bytes.Buffer
	if err := run(context.Background(), []string{"-quick", "-synthetic", "-storage=false", "-out", out}, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	md, err := os.ReadFile(filepath.Join(out, report.MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	text := string(md)
	for _, want := range []string{
		"Command: `go run ./benchmarks/cmd/harness -quick -synthetic -storage=false -out " + out + "`",
		"NOT the real Debian corpus",
		"| workload | budget | single-layer | size-greedy | popularity-contest | auto-layer | nixery-dominator | nixery-go |",
		"](" + report.PullRatioFile + ")",
		"### Targets",
		"## Registry bytes / ideal",
		"## Modelled pull time (s)",
		"(100 MB/s + 50ms/layer;",
		"## Archive corpus (held-out seeds)",
		"Debian bookworm amd64 archive (63436 packages as 63337 acyclic nodes)",
		"- Worst pull ratio of nixery-go at budget 20: ",
		"## HTTP serving", // httpbench runs without the corpus
		"| manifest | 64 | ",
		"| blob | 4 | 33554432 | bare net/http | ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	// One summary row per shape and budget, each with a ratio per algorithm;
	// the archive's offline bounds have a row per shape of their own.
	rows, boundRows := 0, 0
	inBounds := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			inBounds = line == "### Offline bounds"
		}
		for _, s := range sim.Shapes {
			if !strings.HasPrefix(line, "| "+string(s)+" | ") {
				continue
			}
			want := 2 + len(sim.Algorithms()) + 1
			if inBounds {
				boundRows++
				want = 10
			} else {
				rows++
			}
			if cells := strings.Count(line, "|"); cells != want {
				t.Errorf("row %q has %d separators, want %d", line, cells, want)
			}
		}
	}
	if boundRows != len(sim.Shapes) {
		t.Errorf("%d rows of offline bounds, want %d", boundRows, len(sim.Shapes))
	}
	// Three tables, pull ratio, the Docker engine's and the modelled pull
	// time, for the main corpus and for the archive corpus.
	if want := 2 * 3 * len(sim.Shapes) * len(sim.Budgets); rows != want {
		t.Errorf("%d summary rows, want %d", rows, want)
	}
	checkSVG(t, filepath.Join(out, report.PullRatioFile), "polyline", len(sim.Shapes)*len(sim.Algorithms()))
	checkSVG(t, filepath.Join(out, report.DockerFile), "polyline", len(sim.Shapes)*len(sim.Algorithms()))
	if _, err := os.Stat(filepath.Join(out, report.ThroughputFile)); !os.IsNotExist(err) {
		t.Errorf("throughput.svg written without throughput figures: %v", err)
	}
}

// checkSVG parses an SVG file as XML and counts elements named elem.
func checkSVG(t *testing.T, name, elem string, want int) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	n, root := 0, ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == elem {
				n++
			}
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", name, root)
	}
	if n != want {
		t.Errorf("%s: %d %s elements, want %d", name, n, elem, want)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-images", "0", "-seeds", "0"}, {"extra"}, {"-nope"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	o, err := parseFlags([]string{"-quick"}, io.Discard)
	if err != nil || o.images != 50 || o.seeds != 3 || o.out != filepath.Join("benchmarks", "results", "quick") {
		t.Errorf("parseFlags(-quick) = %+v, %v", o, err)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil || o.images != 60 || o.out != filepath.Join("benchmarks", "results", "latest") || !o.speed || !o.pull || !o.storage {
		t.Errorf("parseFlags() = %+v, %v", o, err)
	}
}

// TestFailedPhaseStillReports makes one stage fail: the run returns its
// error, and results.md still holds what the other phases measured and
// says which phase failed and why.
func TestFailedPhaseStillReports(t *testing.T) {
	saved := stages
	t.Cleanup(func() { stages = saved })
	stages = append([]stage{{name: "broken", run: func(context.Context, *env) error {
		return errors.New("the stage broke on purpose")
	}}}, saved...)
	out := t.TempDir()
	var log bytes.Buffer
	err := run(context.Background(), []string{"-quick", "-synthetic", "-http=false", "-storage=false", "-out", out}, &log)
	if err == nil || !strings.Contains(err.Error(), "broken: the stage broke on purpose") {
		t.Fatalf("run: %v, want the broken stage's error", err)
	}
	md, rerr := os.ReadFile(filepath.Join(out, report.MarkdownFile))
	if rerr != nil {
		t.Fatalf("no report after a failed phase: %v", rerr)
	}
	text := string(md)
	for _, want := range []string{
		"## Failed phases",
		"- **broken**: the stage broke on purpose",
		"| workload | budget | single-layer |", // the simulation still reported
		"broken (FAILED)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
}
