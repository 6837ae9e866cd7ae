package nix

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nixery-go/nixery/internal/testutil"
)

func TestBuildErrorMessage(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		// Nix 2.8
		{"error: attribute 'x' missing\n\n       at «string»:3:5:\n\n            2|\n(use '--show-trace' to show detailed location information)\n",
			"nix: evaluate failed: exit status 1: error: attribute 'x' missing"},
		// Nix 2.2x: context first, the innermost error last
		{"error:\n       … while calling the 'throw' builtin\n         at /x/default.nix:3:3:\n\n       error: the Debian package foo is not installed\n",
			"nix: evaluate failed: exit status 1: error: the Debian package foo is not installed"},
		{"building '/nix/store/x.drv'...\nsomething odd\n", "nix: evaluate failed: exit status 1: something odd"},
		{"", "nix: evaluate failed: exit status 1"},
	} {
		err := &BuildError{Op: "evaluate", Err: errors.New("exit status 1"), Log: tc.log}
		if got := err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	inner := errors.New("exit status 1")
	if !errors.Is(fmt.Errorf("wrapped: %w", &BuildError{Op: "build", Err: inner}), inner) {
		t.Error("BuildError does not unwrap")
	}
}

func TestTail(t *testing.T) {
	var lines []string
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	got := tail(strings.Join(lines, "\n") + "\n\n")
	if want := strings.Join(lines[100-tailLines:], "\n"); got != want {
		t.Errorf("tail of 100 lines = %q, want the last %d", got, tailLines)
	}
	if got := tail("one\ntwo"); got != "one\ntwo" {
		t.Errorf("tail of two lines = %q", got)
	}
	long := strings.Repeat("é", tailBytes) // two bytes each
	got = tail("first\n" + long)
	if len(got) > tailBytes+3 || !strings.HasPrefix(got, "...é") || !utf8.ValidString(got) {
		t.Errorf("tail of a long line: %d bytes, %q...", len(got), got[:10])
	}
}

// TestNoisyBuildLogsCappedTailOnce: a build that writes 1 MB to its
// standard error and fails is logged with a bounded tail, once, and its
// error carries the same bounded tail, with the builder's last words.
func TestNoisyBuildLogsCappedTailOnce(t *testing.T) {
	requireNix(t)
	dir := testSet(t, "noisy", map[string]string{"@NONCE@": nonce(t)})
	src, _ := NewPathSource(dir)
	var log testutil.SyncBuffer
	b := NewBuilder(src, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	_, err := b.Build(context.Background(), Request{Packages: []string{"noisy"}})
	var be *BuildError
	if !errors.As(err, &be) || be.Op != "build" {
		t.Fatalf("err = %v, want a BuildError of the build", err)
	}
	if len(be.Log) > tailBytes+3 || !strings.Contains(be.Log, "the last words of the noisy builder") {
		t.Errorf("the error's log: %d bytes, ends %q", len(be.Log), be.Log[max(0, len(be.Log)-100):])
	}
	if len(err.Error()) > maxErrorLine+200 {
		t.Errorf("error message of %d bytes", len(err.Error()))
	}
	s := log.String()
	if n := strings.Count(s, `msg="nix failed"`); n != 1 {
		t.Errorf("%d failures logged, want 1", n)
	}
	if len(s) > 4*tailBytes {
		t.Errorf("a failed build logged %d bytes:\n%s", len(s), s[:min(len(s), 2000)])
	}
	if !strings.Contains(s, "the last words of the noisy builder") {
		t.Errorf("the log lacks the builder's last words:\n%s", s)
	}
}
