package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOneCallPerKey: concurrent callers of one key share one run.
func TestOneCallPerKey(t *testing.T) {
	var g Group[int]
	var runs atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) {
				runs.Add(1)
				<-release
				return 42, nil
			})
			if v != 42 || err != nil {
				t.Errorf("Do = %d, %v", v, err)
			}
		}()
	}
	for g.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others join
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
	if g.Waiting() != 0 {
		t.Errorf("%d calls left over", g.Waiting())
	}
}

// TestLeaveAndAbandon: a caller that gives up returns at once; the call is
// abandoned only when the last caller has left, and finishes meanwhile for
// those who stay.
func TestLeaveAndAbandon(t *testing.T) {
	var g Group[string]
	started := make(chan struct{})
	abandoned := make(chan error, 1)
	fn := func(ctx context.Context) (string, error) {
		close(started)
		<-ctx.Done()
		abandoned <- context.Cause(ctx)
		return "", context.Cause(ctx)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := g.Do(ctx1, "k", fn); errs <- err }()
	<-started
	go func() { _, err := g.Do(ctx2, "k", fn); errs <- err }()
	time.Sleep(20 * time.Millisecond)

	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v, want context.Canceled", err)
	}
	select {
	case err := <-abandoned:
		t.Fatalf("call abandoned (%v) while a caller still waits", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("second caller: %v", err)
	}
	select {
	case err := <-abandoned:
		if !errors.Is(err, ErrAbandoned) {
			t.Errorf("cause %v, want ErrAbandoned", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call not abandoned after every caller left")
	}
}

// TestNewCallerAfterAbandon: a caller arriving after every earlier caller
// left gets a call of its own, not the abandoned one's cancellation.
func TestNewCallerAfterAbandon(t *testing.T) {
	var g Group[int]
	block := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Do(ctx, "k", func(ctx context.Context) (int, error) {
			<-block // keeps running although abandoned
			return 1, nil
		})
	}()
	for g.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	v, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 2, nil })
	if v != 2 || err != nil {
		t.Errorf("new caller got %d, %v; want its own call's 2", v, err)
	}
	close(block)
}
