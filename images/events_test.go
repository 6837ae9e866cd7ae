package images

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil/fakenix"
)

// TestEventsOfABuild: a subscriber sees a build queued, through its
// phases to done with the image's key and layers, re-sent while a phase
// lasts; the history keeps it; a cached request makes no build.
func TestEventsOfABuild(t *testing.T) {
	f := newFixture(t, &fakenix.Nix{Delay: 350 * time.Millisecond}, nil, "")
	c, cancel := f.b.Subscribe(1024) // room for every event of the build
	defer cancel()
	var listened []Event
	done := make(chan struct{})
	f.b.Listen(func(e Event) {
		if !e.Repeat {
			listened = append(listened, e)
		}
		if e.Phase.Final() {
			close(done)
		}
	})
	img, err := f.b.Image(t.Context(), "shell/curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	<-done
	var phases []Phase
	repeats := 0
	var last Event
	for last.Phase != PhaseDone {
		select {
		case last = <-c:
		case <-time.After(10 * time.Second):
			t.Fatalf("no done event; phases so far %v", phases)
		}
		if last.Repeat {
			repeats++
		}
		if len(phases) == 0 || phases[len(phases)-1] != last.Phase {
			phases = append(phases, last.Phase)
		}
		if last.Build != 1 || last.Name != "bashInteractive/coreutils/curl/moreutils/nano" || !slices.Contains(last.Packages, "cacert") {
			t.Errorf("event %+v", last)
		}
	}
	// fakenix "starts" (Started: evaluating) but reports no realising.
	if want := []Phase{PhaseQueued, PhaseEvaluating, PhaseGrouping, PhaseCompressing, PhaseWriting, PhaseDone}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	if repeats < 2 {
		t.Errorf("%d repeated events over a 350 ms phase, want at least 2 (every %v)", repeats, tickInterval)
	}
	if last.Key != img.Key || last.Layers != len(img.layers) || last.Bytes <= 0 || last.Seconds < 0.35 || last.Error != "" {
		t.Errorf("the last event %+v", last)
	}
	if len(listened) < 5 || listened[0].Phase != PhaseQueued || listened[len(listened)-1].Phase != PhaseDone {
		t.Errorf("the listener heard %v", listened)
	}
	if a := f.b.Active(); len(a) != 0 {
		t.Errorf("active after the build: %v", a)
	}
	if _, err := f.b.Image(t.Context(), "curl/shell", "latest"); err != nil {
		t.Fatal(err)
	}
	recent, failed := f.b.Recent()
	if len(recent) != 1 || recent[0].Key != img.Key || len(failed) != 0 {
		t.Errorf("Recent = %v, %v", recent, failed)
	}
	if s := last.Status(); s != "done" {
		t.Errorf("Status() = %q", s)
	}
	if s := (Event{Phase: PhaseCompressing, Done: 1_500_000, Total: 4_000_000}).Status(); s != "compressing 1.5 of 4.0 MB" {
		t.Errorf("Status() = %q", s)
	}
	if s := (Event{Phase: PhaseRealising, Done: 2, Total: 7}).Status(); s != "realising 2 of 7 paths" {
		t.Errorf("Status() = %q", s)
	}
}

// TestEventsHistoryIsBounded: the history keeps the last History builds
// and, apart, the last History failures, the newest first, with the cause
// and Nix's short message.
func TestEventsHistoryIsBounded(t *testing.T) {
	f := newFixtureWith(t, nil, newStore(t), "", func(c *Config) { c.History = 3 })
	for _, name := range []string{"curl", "git", "hello", "nano", "zlib"} {
		if _, err := f.b.Image(t.Context(), name, "latest"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.b.Image(t.Context(), name+"/nosuch", "latest"); err == nil {
			t.Fatal("an unknown package was built")
		}
	}
	recent, failed := f.b.Recent()
	var names, errs []string
	for _, e := range recent {
		names = append(names, e.Name)
	}
	for _, e := range failed {
		errs = append(errs, e.Name)
		if e.Cause != "unknown_packages" || !strings.Contains(e.Error, "nosuch") || e.Phase != PhaseFailed {
			t.Errorf("failure %+v", e)
		}
	}
	if want := []string{"zlib", "nano", "hello"}; !slices.Equal(names, want) {
		t.Errorf("recent builds %v, want %v", names, want)
	}
	if want := []string{"nosuch/zlib", "nano/nosuch", "hello/nosuch"}; !slices.Equal(errs, want) {
		t.Errorf("recent failures %v, want %v", errs, want)
	}
}

// TestImageInfoSharing: an image's layers list their store paths with
// sizes and the other images that have them.
func TestImageInfoSharing(t *testing.T) {
	f := newFixture(t, nil, nil, "")
	curl, err := f.b.Image(t.Context(), "curl", "latest")
	if err != nil {
		t.Fatal(err)
	}
	git, err := f.b.Image(t.Context(), "git", "latest")
	if err != nil {
		t.Fatal(err)
	}
	info, ok := f.b.ImageInfo(git.Key)
	if !ok || info.Name != "git" || len(info.Layers) != len(git.layers) || !info.Layers[len(info.Layers)-1].Custom {
		t.Fatalf("ImageInfo = %+v, %v", info, ok)
	}
	shared := false
	for _, l := range info.Layers {
		for _, o := range l.SharedWith {
			shared = shared || o.Key == curl.Key
		}
	}
	if !shared {
		t.Errorf("no layer of git's image is shared with curl's")
	}
	if _, ok := f.b.ImageInfo("nope"); ok {
		t.Error("ImageInfo of an unknown key")
	}
}
