// Package flight runs one call per key at a time and hands its result to
// every caller that asked for the key meanwhile (a "singleflight"). Unlike
// golang.org/x/sync/singleflight, a waiting caller can leave when its
// context ends without cancelling the call for the others, and the call
// learns when every caller has left, so that work nobody waits for any more
// can stop while work worth finishing (a build whose result is cached)
// carries on.
package flight

import (
	"context"
	"errors"
	"sync"
)

// ErrAbandoned is the cause of the context a call runs with once every
// caller waiting for it has left.
var ErrAbandoned = errors.New("flight: every caller has left")

// Group is a set of keyed calls. The zero value is ready to use; a Group
// must not be copied after first use.
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done    chan struct{}
	val     T
	err     error
	waiters int
	abandon context.CancelCauseFunc
	ctx     context.Context
}

// Do returns the result of fn for key, running fn unless a call for key is
// under way, in which case it waits for that call's result.
//
// fn runs in a goroutine of its own with a context that carries ctx's
// values but not its cancellation; that context is cancelled, with cause
// [ErrAbandoned], once every caller of Do for this call has returned because
// its own context ended. fn decides what to stop then. A caller whose
// context ends gets context.Cause(ctx) at once.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[string]*call[T])
	}
	c, ok := g.calls[key]
	if !ok || c.ctx.Err() != nil {
		// No call, or one every caller has left: a new caller must not
		// inherit its cancellation, so it gets a call of its own.
		c = &call[T]{done: make(chan struct{})}
		c.ctx, c.abandon = context.WithCancelCause(context.WithoutCancel(ctx))
		g.calls[key] = c
		go g.run(key, c, fn)
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
		g.leave(c, false)
		return c.val, c.err
	case <-ctx.Done():
		g.leave(c, true)
		var zero T
		return zero, context.Cause(ctx)
	}
}

func (g *Group[T]) run(key string, c *call[T], fn func(context.Context) (T, error)) {
	defer func() {
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		c.abandon(nil)
		close(c.done)
	}()
	c.val, c.err = fn(c.ctx)
}

// leave ends a caller's wait; the last caller to give up abandons the call.
func (g *Group[T]) leave(c *call[T], gaveUp bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if gaveUp && c.waiters == 0 {
		c.abandon(ErrAbandoned)
	}
}

// Waiting returns how many calls are under way.
func (g *Group[T]) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}
