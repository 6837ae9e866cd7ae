package nix

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
