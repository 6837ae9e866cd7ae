package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Unit tests of the progress reporter and of the phases read from the
// builder's log; TestCLI runs the real thing.

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

// TestBuildPhases feeds the records the builder logs (as nix, images and
// layers write them) and checks the phases they become.
func TestBuildPhases(t *testing.T) {
	var buf, logBuf bytes.Buffer
	p := newProgress(t.Context(), &buf, progressPlain)
	phases := newBuildPhases(slog.NewTextHandler(&logBuf, nil), p)
	log := slog.New(phases).With("packages", []string{"hello"})
	resolve := []string{"--eval", "--expr", "<resolve.nix>", "--argstr", "request", "{}"}

	phases.start("hello")
	log.Info("nix command", "op", "evaluate", "args", []string{"--eval", "--expr", "{ dir, system }: ..."}, "err", nil)
	log.Info("computing the package set's popularity", "packages", 65)
	// The popularity's own Nix runs are not the image's phases.
	log.Info("nix command", "op", "evaluate", "args", resolve, "err", nil)
	log.Info("nix command", "op", "build", "args", []string{"--realise"}, "err", nil)
	log.Info("nix command", "op", "query", "args", []string{"path-info"}, "err", nil)
	log.Info("popularity ready")
	log.Info("nix command", "op", "evaluate", "args", resolve, "err", nil)
	log.Info("nix command", "op", "build", "args", []string{"--realise"}, "err", nil)
	log.Info("nix command", "op", "query", "args", []string{"path-info"}, "err", nil)
	log.Info("layer built", "blob_bytes", int64(1_500_000))
	log.Info("layer built", "blob_bytes", int64(500_000))
	p.Close()

	var got []string
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		_, text, _ := strings.Cut(line, "] ")
		got = append(got, text)
	}
	want := []string{
		"evaluating hello",
		"computing the package set's popularity (once per storage directory)",
		"evaluating hello",
		"realising the store paths",
		"reading the closure",
		"building layers",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("phases:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := phases.nixRuns(); n != 7 {
		t.Errorf("nixRuns %d, want 7", n)
	}
	ph := &phaseText{}
	p.mu.Lock()
	p.phase = ph
	p.mu.Unlock()
	log.Info("layer built", "blob_bytes", int64(1))
	if got := ph.get(); got != "building layers: 3 built, 2.0 MB" {
		t.Errorf("the layers phase reads %q", got)
	}
	// The records also reach the next handler, with their attributes.
	if !strings.Contains(logBuf.String(), `msg="layer built" packages=[hello] blob_bytes=1500000`) {
		t.Errorf("the log handler did not get the records:\n%s", logBuf.String())
	}
	// Debug records are not enabled unless the next handler wants them.
	quiet := newBuildPhases(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}), p)
	if quiet.Enabled(t.Context(), slog.LevelDebug) || !quiet.Enabled(t.Context(), slog.LevelInfo) {
		t.Error("Enabled: want Info and above only")
	}
}
