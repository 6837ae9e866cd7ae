package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/images"
)

// Unit tests of the progress reporter and of the phases read from the
// builder's events; TestCLI runs the real thing.

func TestProgressPlain(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(t.Context(), &buf, progressAuto) // a buffer is no terminal
	if p.bars != nil {
		t.Fatal("auto mode draws bars into a buffer")
	}
	p.Phase("evaluating %s", "hello")
	p.Update("never printed")
	p.Note("hello built")
	tr := p.Bytes("writing out.tar", 2000)
	tr.Add(500)
	tr.last = time.Now().Add(-2 * plainInterval) // a second has passed
	tr.Add(500)
	tr.Done()
	tr.Add(1) // after Done: ignored
	p.Close()
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	want := []string{
		"] evaluating hello",
		"] hello built",
		"] writing out.tar: 2.0 kB",
		"] writing out.tar: 1.0 kB of 2.0 kB",
		"] writing out.tar: 1.0 kB in ",
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "nixery: [") || !strings.Contains(lines[i], w) {
			t.Errorf("line %d %q, want %q", i, lines[i], w)
		}
	}
	if strings.Contains(buf.String(), "never printed") {
		t.Error("plain mode printed an update")
	}
}

// TestProgressHeartbeat: a plain phase that lasts says it is still going
// every plainHeartbeat, with its current text; a result line does not.
func TestProgressHeartbeat(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(t.Context(), &buf, progressPlain)
	defer p.Close()
	p.Phase("building layers")
	p.Update("building layers: 3 built, 1.0 MB")
	p.mu.Lock()
	start := p.lastLine
	p.mu.Unlock()
	p.beat(start.Add(plainHeartbeat / 2)) // too soon
	p.beat(start.Add(plainHeartbeat))
	p.beat(start.Add(plainHeartbeat + time.Second)) // too soon after the last
	p.Note("hello built")
	p.beat(start.Add(5 * plainHeartbeat))
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "] still building layers: 3 built, 1.0 MB (10s)") {
		t.Errorf("lines:\n%s", buf.String())
	}
}

func TestProgressBars(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(t.Context(), &buf, progressBars)
	p.Phase("evaluating hello")
	p.Phase("building layers")
	p.Update("building layers: 2 built, 1.0 MB")
	p.Note("hello built: 3 layers")
	tr := p.Bytes("writing out.tar", 0) // total learnt later, as a push does
	tr.Set(1000, 4000)
	tr.Set(4000, 4000)
	tr.Done()
	p.Close()
	out := buf.String()
	for _, w := range []string{"✓ evaluating hello (", "✓ building layers: 2 built, 1.0 MB (", "✓ hello built: 3 layers", "writing out.tar", "4.0 KB / 4.0 KB", "done"} {
		if !strings.Contains(out, w) {
			t.Errorf("bars do not show %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "hello built: 3 layers (") {
		t.Errorf("a note got a duration:\n%s", out)
	}
}

func TestProgressNone(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(t.Context(), &buf, progressNone)
	p.Phase("evaluating hello")
	tr := p.Bytes("writing", 10)
	tr.Add(10)
	tr.Done()
	p.Close()
	if buf.Len() != 0 {
		t.Errorf("-progress none wrote %q", buf.String())
	}
}

// TestBuildPhases feeds the builder's events, as a build publishes them,
// and checks the phases they become.
func TestBuildPhases(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(t.Context(), &buf, progressPlain)
	phases := newBuildPhases(p)

	// A popularity that is not ready at once is a phase of its own.
	release := make(chan struct{})
	time.AfterFunc(3*popularityWait, func() { close(release) })
	if err := phases.start("hello", func() error { <-release; return nil }); err != nil {
		t.Fatal(err)
	}
	if phases.built() {
		t.Error("built before any build event")
	}
	ev := func(ph images.Phase, done, total int64) {
		phases.event(images.Event{Build: 1, Name: "hello", Phase: ph, Done: done, Total: total})
	}
	ev(images.PhaseQueued, 0, 0)
	// Still queued 100 ms later: waiting for a Nix slot.
	phases.event(images.Event{Build: 1, Name: "hello", Phase: images.PhaseQueued, Repeat: true})
	ev(images.PhaseEvaluating, 0, 0)
	ev(images.PhaseRealising, 0, 0)
	ev(images.PhaseRealising, 1, 3)
	ev(images.PhaseRealising, 3, 3) // progress within a phase: no new line
	ev(images.PhaseGrouping, 0, 0)
	ev(images.PhaseCompressing, 0, 2_000_000)
	ev(images.PhaseCompressing, 1_500_000, 2_000_000)
	// A repeat publishes unchanged progress.
	phases.event(images.Event{Build: 1, Name: "hello", Phase: images.PhaseCompressing, Done: 1_500_000, Total: 2_000_000, Repeat: true})
	p.mu.Lock()
	text := p.phase.get()
	p.mu.Unlock()
	if text != "building layers: 1.5 MB of 2.0 MB" {
		t.Errorf("the layers phase reads %q", text)
	}
	ev(images.PhaseWriting, 0, 0)
	ev(images.PhaseDone, 0, 0)
	if !phases.built() {
		t.Error("not built after a build's events")
	}
	p.Close()

	want := []string{
		"computing the package set's popularity (once per storage directory)",
		"evaluating hello",
		"waiting for a Nix slot",
		"evaluating hello",
		"realising the store paths",
		"grouping the closure into layers",
		"building layers",
		"writing the manifests",
	}
	if got := phaseLines(buf.String()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("phases:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The next image starts afresh: a popularity that is ready is no
	// phase, and an image from the caches has no build.
	buf.Reset()
	p = newProgress(t.Context(), &buf, progressPlain)
	phases.p = p
	if err := phases.start("hello", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := phaseLines(buf.String()); strings.Join(got, "\n") != "evaluating hello" {
		t.Errorf("a cached image's phases: %q", got)
	}
	if phases.built() {
		t.Error("a cached image counts as built")
	}
	// A build that gets a Nix slot at once shows no wait.
	ev(images.PhaseQueued, 0, 0)
	ev(images.PhaseEvaluating, 0, 0)
	ev(images.PhaseRealising, 0, 0)
	p.Close()
	if got := phaseLines(buf.String()); strings.Join(got, "\n") != "evaluating hello\nrealising the store paths" {
		t.Errorf("a build with no wait: %q", got)
	}
	if !phases.built() {
		t.Error("a build does not count as built")
	}
}

// phaseLines returns plain mode's lines without their times.
func phaseLines(out string) []string {
	var got []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		_, text, _ := strings.Cut(line, "] ")
		got = append(got, text)
	}
	return got
}
