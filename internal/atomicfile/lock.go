package atomicfile

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// A Lock is an exclusive lock among the goroutines of this process and the
// processes that lock the same file: a mutex within the process, an
// flock on the file between processes. The kernel releases the flock of a
// process that dies. The zero value is not usable; make one with [NewLock].
type Lock struct {
	path string
	mu   chan struct{} // a mutex that a waiter can leave
	f    *os.File      // open while locked
}

// NewLock returns a lock on the file path, which is created when first
// locked. Its directory must exist.
func NewLock(path string) *Lock {
	return &Lock{path: path, mu: make(chan struct{}, 1)}
}

// lockPoll is how often Lock tries the flock again while another process
// holds it.
const lockPoll = 20 * time.Millisecond

// Lock waits for the lock until ctx ends.
func (l *Lock) Lock(ctx context.Context) error {
	select {
	case l.mu <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	for {
		ok, err := l.tryFlock()
		if err != nil || ok {
			if err != nil {
				<-l.mu
			}
			return err
		}
		select {
		case <-time.After(lockPoll):
		case <-ctx.Done():
			<-l.mu
			return context.Cause(ctx)
		}
	}
}

// TryLock takes the lock if it is free at once, and reports whether it
// did.
func (l *Lock) TryLock() (bool, error) {
	select {
	case l.mu <- struct{}{}:
	default:
		return false, nil
	}
	ok, err := l.tryFlock()
	if !ok {
		<-l.mu
	}
	return ok, err
}

func (l *Lock) tryFlock() (bool, error) {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, fmt.Errorf("atomicfile: lock: %w", err)
	}
	switch err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err {
	case nil:
		l.f = f
		return true, nil
	case syscall.EWOULDBLOCK:
		f.Close()
		return false, nil
	default:
		f.Close()
		return false, fmt.Errorf("atomicfile: lock %s: %w", l.path, err)
	}
}

// Unlock releases the lock, which must be held.
func (l *Lock) Unlock() {
	f := l.f
	l.f = nil
	f.Close() // releases the flock
	<-l.mu
}

// Do runs fn holding the lock.
func (l *Lock) Do(ctx context.Context, fn func() error) error {
	if err := l.Lock(ctx); err != nil {
		return err
	}
	defer l.Unlock()
	return fn()
}
