package nix

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMaxConcurrent uses a fake Nix that records how many builds run at
// once: with MaxConcurrent 2, never more than two.
func TestMaxConcurrent(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{MaxConcurrent: 2})
	var running, peak atomic.Int64
	b.run = func(ctx context.Context, c command) (output, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		return output{}, errors.New("fake nix")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Build(context.Background(), Request{Packages: []string{"hello"}}); err == nil {
				t.Error("fake Nix failed but Build succeeded")
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d, want 2", p)
	}
}

// TestWaitingBuildCanBeCanceled: a Build waiting for a slot returns when
// its context ends.
func TestWaitingBuildCanBeCanceled(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{MaxConcurrent: 1})
	release := make(chan struct{})
	started := make(chan struct{})
	b.run = func(ctx context.Context, c command) (output, error) {
		close(started)
		<-release
		return output{}, errors.New("fake nix")
	}
	go b.Build(context.Background(), Request{Packages: []string{"hello"}})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := b.Build(ctx, Request{Packages: []string{"hello"}})
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v, want the caller's context error", err)
	}
}

// TestBuildRejectsBadRequests covers requests refused before Nix runs.
func TestBuildRejectsBadRequests(t *testing.T) {
	b, runs := countingBuilder(t, testBundled(t), Options{})
	if _, err := b.Build(context.Background(), Request{}); err == nil {
		t.Error("empty request accepted")
	}
	if _, err := b.Build(context.Background(), Request{Packages: []string{"hello"}, Tag: "../x"}); !errors.Is(err, ErrInvalidTag) {
		t.Errorf("bad tag: %v", err)
	}
	var us *UnsupportedSystemError
	if _, err := b.Build(context.Background(), Request{Packages: []string{"hello"}, System: "x86_64-darwin"}); !errors.As(err, &us) {
		t.Errorf("darwin: %v", err)
	}
	if runs.Load() != 0 {
		t.Errorf("Nix ran %d times", runs.Load())
	}
}

// blockingRun is a fake Nix whose every command waits until release is
// closed or its context ends; started receives a value when a command
// starts.
func blockingRun(started chan<- struct{}, release <-chan struct{}) runFunc {
	return func(ctx context.Context, c command) (output, error) {
		started <- struct{}{}
		select {
		case <-release:
			return output{}, errors.New("fake nix")
		case <-ctx.Done():
			return output{}, ctx.Err()
		}
	}
}

// TestQueueFull: with one slot and a queue of one, a third Build gets a
// BusyError at once, with a retry delay, and the queue admits again once
// there is room.
func TestQueueFull(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{MaxConcurrent: 1, MaxQueue: 1, Timeout: time.Minute})
	started, release := make(chan struct{}, 4), make(chan struct{})
	b.run = blockingRun(started, release)
	errs := make(chan error, 2)
	go func() { _, err := b.Build(context.Background(), Request{Packages: []string{"hello"}}); errs <- err }()
	<-started
	go func() { _, err := b.Build(context.Background(), Request{Packages: []string{"curl"}}); errs <- err }()
	for b.waiting.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	_, err := b.Build(context.Background(), Request{Packages: []string{"jq"}})
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Running != 1 || busy.Queued != 1 || busy.RetryAfter() < time.Second || busy.RetryAfter() > time.Minute {
		t.Fatalf("third build: %v (%+v), want a BusyError", err, busy)
	}
	if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "try again in") {
		t.Errorf("busy error %q", err)
	}
	close(release)
	for range 2 {
		if err := <-errs; err == nil || errors.As(err, &busy) {
			t.Errorf("an admitted build: %v", err)
		}
	}
	if b.waiting.Load() != 0 {
		t.Errorf("%d still counted as waiting", b.waiting.Load())
	}
}

// TestNoQueue: a negative MaxQueue lets no Build wait.
func TestNoQueue(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{MaxConcurrent: 1, MaxQueue: -1})
	started, release := make(chan struct{}, 1), make(chan struct{})
	b.run = blockingRun(started, release)
	defer close(release)
	go b.Build(context.Background(), Request{Packages: []string{"hello"}})
	<-started
	var busy *BusyError
	if _, err := b.Build(context.Background(), Request{Packages: []string{"curl"}}); !errors.As(err, &busy) {
		t.Errorf("err = %v, want a BusyError", err)
	}
}

// TestTimeoutCountsQueueing: the timeout runs from the call of Build, so
// a Build that waits for a slot longer than the timeout fails with
// ErrTimeout without running Nix.
func TestTimeoutCountsQueueing(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{MaxConcurrent: 1, Timeout: 200 * time.Millisecond})
	started, release := make(chan struct{}, 2), make(chan struct{})
	var runs atomic.Int64
	inner := blockingRun(started, release)
	b.run = func(ctx context.Context, c command) (output, error) {
		runs.Add(1)
		return inner(ctx, c)
	}
	// The first build holds the slot for longer than the timeout of
	// the second.
	first := make(chan error, 1)
	go func() {
		_, err := b.buildWithin(context.Background(), Request{Packages: []string{"hello"}}, time.Minute)
		first <- err
	}()
	<-started
	_, err := b.Build(context.Background(), Request{Packages: []string{"curl"}})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "waiting for a build slot") {
		t.Errorf("queued build: %v, want ErrTimeout while waiting", err)
	}
	release <- struct{}{}
	if err := <-first; err == nil || errors.Is(err, ErrTimeout) {
		t.Errorf("running build: %v, want the fake's failure", err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("Nix ran %d times, want 1 (the queued build never started)", n)
	}
}

// TestStarted: Request.Started is called once a Build has its slot, before
// Nix runs, and not for a Build that leaves the queue.
func TestStarted(t *testing.T) {
	b := NewBuilder(testBundled(t), Options{MaxConcurrent: 1})
	started, release := make(chan struct{}, 2), make(chan struct{})
	inner := blockingRun(started, release)
	var calls atomic.Int64
	b.run = func(ctx context.Context, c command) (output, error) {
		if calls.Load() == 0 {
			t.Error("Nix ran before Started")
		}
		return inner(ctx, c)
	}
	go b.Build(context.Background(), Request{Packages: []string{"hello"}, Started: func() { calls.Add(1) }})
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	var queuedStarted atomic.Bool
	go func() {
		_, err := b.Build(ctx, Request{Packages: []string{"curl"}, Started: func() { queuedStarted.Store(true) }})
		queued <- err
	}()
	for b.waiting.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled queued build: %v", err)
	}
	close(release)
	if queuedStarted.Load() || calls.Load() != 1 {
		t.Errorf("Started called %d times for the running build, %v for the cancelled one", calls.Load(), queuedStarted.Load())
	}
}

// TestNixRunsNicer: Nix and the builders it starts run nixNice below this
// process's CPU priority.
func TestNixRunsNicer(t *testing.T) {
	requireNix(t)
	src, _ := NewPathSource(testSet(t, "nice", map[string]string{"@NONCE@": nonce(t)}))
	b, _ := countingBuilder(t, src, Options{})
	res := build(t, b, Request{Packages: []string{"nice"}})
	out, err := os.ReadFile(res.Packages[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(out)), strconv.Itoa(min(20-prio+nixNice, 19)); got != want {
		t.Errorf("the builder ran at nice %s, want %s", got, want)
	}
}
