package images

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nixery-go/nixery/internal/flight"
)

// DefaultNegativeTTL is how long a failed build is remembered unless
// [Config.NegativeTTL] says otherwise.
const DefaultNegativeTTL = 10 * time.Second

// maxFailures bounds the failures remembered at once.
const maxFailures = 4096

// failures remembers, for a short while, the requests whose build failed
// for a reason that a retry does not change: unknown packages, tags or
// systems, a failed Nix build. Requests are known by their request key,
// which names the package source, the system, the command and the packages
// as spelt.
type failures struct {
	ttl time.Duration // <= 0: nothing is remembered

	mu sync.Mutex
	m  map[string]failure
}

type failure struct {
	err     error
	expires time.Time
}

// get returns the failure remembered for rk, if it has not expired.
func (f *failures) get(rk string) error {
	if f.ttl <= 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[rk]
	if !ok {
		return nil
	}
	if time.Now().After(e.expires) {
		delete(f.m, rk)
		return nil
	}
	return e.err
}

// put remembers err for rk unless a retry may give another answer (see
// [lasting]). When the cache is full, expired entries go first, then the
// one closest to expiry.
func (f *failures) put(rk string, err error) {
	if f.ttl <= 0 || !lasting(err) {
		return
	}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]failure{}
	}
	if _, ok := f.m[rk]; !ok && len(f.m) >= maxFailures {
		oldest, first := "", time.Time{}
		for k, e := range f.m {
			if now.After(e.expires) {
				delete(f.m, k)
			} else if oldest == "" || e.expires.Before(first) {
				oldest, first = k, e.expires
			}
		}
		if len(f.m) >= maxFailures {
			delete(f.m, oldest)
		}
	}
	f.m[rk] = failure{err: err, expires: now.Add(f.ttl)}
}

// lasting reports whether a build failure is the request's own, so that a
// retry soon after gives the same answer: not a timeout, a cancellation, a
// build nobody waited for, or a server too busy to build (an error that
// says when to retry).
func lasting(err error) bool {
	var retry interface{ RetryAfter() time.Duration }
	return !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, context.Canceled) &&
		!errors.Is(err, flight.ErrAbandoned) &&
		!errors.As(err, &retry)
}
