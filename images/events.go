package images

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nixery-go/nixery/internal/flight"
	"github.com/nixery-go/nixery/nix"
)

// A Phase is a step of a build, in the order they happen; PhaseDone and
// PhaseFailed end it.
type Phase string

const (
	PhaseQueued      Phase = "queued"      // waiting for a Nix slot
	PhaseEvaluating  Phase = "evaluating"  // nix-instantiate resolves the names
	PhaseRealising   Phase = "realising"   // nix-store --realise: Done of Total derivations
	PhaseGrouping    Phase = "grouping"    // the closure is split into layers
	PhaseCompressing Phase = "compressing" // layers are built: Done of Total bytes of store paths
	PhaseWriting     Phase = "writing"     // the customisation layer, config and manifests
	PhaseDone        Phase = "done"
	PhaseFailed      Phase = "failed"
)

// Final reports whether p ends a build.
func (p Phase) Final() bool { return p == PhaseDone || p == PhaseFailed }

// DefaultHistory is how many finished builds, and separately how many
// failed ones, a Builder remembers for [Builder.Recent].
const DefaultHistory = 1000

// tickInterval is how often a build in progress re-publishes its
// progress, so that a follower hears from it at least this often even
// while one Nix process runs for long.
const tickInterval = 100 * time.Millisecond

// Event is the progress of one build (one Nix run for a request; see
// [Builder.Subscribe]). Every event of a build carries its ID, what it
// builds, and where it is; the last one (Phase done or failed) carries the
// result.
type Event struct {
	// Build numbers the builds of this Builder from 1.
	Build uint64 `json:"build"`
	// Name is the requested packages as an image name (see [DisplayName]).
	Name     string   `json:"name"`
	Packages []string `json:"packages"`
	Tag      string   `json:"tag"`
	System   string   `json:"system"`

	Phase Phase `json:"phase"`
	// Done and Total count the phase's work in Unit ("paths" while
	// realising, "bytes" while compressing); Total is 0 when unknown.
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit,omitempty"`

	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	// Seconds is the time since Started.
	Seconds float64 `json:"seconds"`

	// The result, in the last event: the image key, its layers and their
	// bytes, the layers found in the layer cache; or the error and its
	// cause (see [Cause]).
	Key       string `json:"key,omitempty"`
	Layers    int    `json:"layers,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
	CacheHits int    `json:"cacheHits"`
	Error     string `json:"error,omitempty"`
	Cause     string `json:"cause,omitempty"`

	// Repeat marks an event that re-publishes unchanged progress.
	Repeat bool `json:"repeat,omitempty"`
}

// Status describes the event's phase for people: "realising 3 of 7
// paths", "compressing 12.5 of 40.0 MB".
func (e Event) Status() string {
	switch {
	case e.Phase == PhaseRealising && e.Total > 0:
		return fmt.Sprintf("realising %d of %d paths", e.Done, e.Total)
	case e.Phase == PhaseCompressing && e.Total > 0:
		return fmt.Sprintf("compressing %.1f of %.1f MB", float64(e.Done)/1e6, float64(e.Total)/1e6)
	case e.Phase == PhaseFailed && e.Error != "":
		return "failed: " + e.Error
	}
	return string(e.Phase)
}

// Cause classifies a build error for metrics and the landing page:
// "unknown_packages", "invalid_name", "unsupported_system", "timeout",
// "busy" (a full queue), "cancelled", "nix" (a failed Nix command),
// "nix_missing", or "other".
func Cause(err error) string {
	var (
		unknown *nix.UnknownPackagesError
		invalid *nix.InvalidNameError
		system  *nix.UnsupportedSystemError
		busy    *nix.BusyError
		be      *nix.BuildError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unknown):
		return "unknown_packages"
	case errors.As(err, &invalid):
		return "invalid_name"
	case errors.As(err, &system):
		return "unsupported_system"
	case errors.As(err, &busy):
		return "busy"
	case errors.Is(err, nix.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, flight.ErrAbandoned), errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, nix.ErrNixNotFound):
		return "nix_missing"
	case errors.As(err, &be):
		return "nix"
	}
	return "other"
}

// DisplayName is the image name of packages for people: the packages
// joined by "/", without those of [AlwaysIncluded] (every image has them),
// so "cacert/curl/iana-etc" shows as "curl". It is a name that gives the
// same image.
func DisplayName(packages []string) string {
	var keep []string
	for _, p := range packages {
		if !slices.Contains(AlwaysIncluded, p) {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		keep = packages
	}
	return strings.Join(keep, "/")
}

// ring keeps the last cap events.
type ring struct {
	buf  []Event
	next int
	full bool
}

func (r *ring) add(e Event, limit int) {
	if len(r.buf) < limit {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % limit
	r.full = true
}

// newestFirst returns the events, the newest first.
func (r *ring) newestFirst() []Event {
	out := make([]Event, 0, len(r.buf))
	for i := len(r.buf) - 1; i >= 0; i-- {
		out = append(out, r.buf[(r.next+i)%len(r.buf)])
	}
	return out
}

// events is a Builder's publisher of build progress and its history.
type events struct {
	mu        sync.Mutex
	last      uint64
	active    map[uint64]*Event
	subs      map[chan Event]struct{}
	listeners []func(Event)
	history   int
	done      ring
	failed    ring
}

func (ev *events) init(history int) {
	if history <= 0 {
		history = DefaultHistory
	}
	ev.history = history
	ev.active = make(map[uint64]*Event)
	ev.subs = make(map[chan Event]struct{})
}

// publish sends e to the listeners and subscribers (dropping it for a
// subscriber whose buffer is full: the next tick tells it again).
func (ev *events) publishLocked(e Event) []func(Event) {
	for c := range ev.subs {
		select {
		case c <- e:
		default:
		}
	}
	return ev.listeners
}

// tracker reports one build's progress.
type tracker struct {
	ev   *events
	id   uint64
	stop chan struct{}
	once sync.Once
}

// start begins the events of a build of r, which is queued.
func (ev *events) start(r *Request) *tracker {
	now := time.Now()
	ev.mu.Lock()
	ev.last++
	e := &Event{
		Build: ev.last, Name: DisplayName(r.Packages), Packages: slices.Clone(r.Packages),
		Tag: r.Tag, System: r.System, Phase: PhaseQueued, Started: now, Time: now,
	}
	ev.active[e.Build] = e
	ls := ev.publishLocked(*e)
	ev.mu.Unlock()
	for _, l := range ls {
		l(*e)
	}
	t := &tracker{ev: ev, id: e.Build, stop: make(chan struct{})}
	go t.tick()
	return t
}

// tick re-publishes the build's progress every tickInterval until it ends.
func (t *tracker) tick() {
	tk := time.NewTicker(tickInterval)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.update(func(e *Event) bool { e.Repeat = true; return true })
		}
	}
}

// update changes the build's event with f and publishes it, unless f
// returns false or the build has ended.
func (t *tracker) update(f func(*Event) bool) {
	ev := t.ev
	ev.mu.Lock()
	e := ev.active[t.id]
	if e == nil {
		ev.mu.Unlock()
		return
	}
	e.Repeat = false
	if !f(e) {
		ev.mu.Unlock()
		return
	}
	e.Time = time.Now()
	e.Seconds = e.Time.Sub(e.Started).Seconds()
	out := *e
	var ls []func(Event)
	ls = ev.publishLocked(out)
	ev.mu.Unlock()
	for _, l := range ls {
		l(out)
	}
}

// phase moves the build to phase p with progress done of total unit.
func (t *tracker) phase(p Phase, done, total int64, unit string) {
	t.update(func(e *Event) bool {
		if e.Phase == p && e.Done == done && e.Total == total {
			return false
		}
		e.Phase, e.Done, e.Total, e.Unit = p, done, total, unit
		return true
	})
}

// finish ends the build with its image or its error; it is safe to call
// more than once (only the first counts).
func (t *tracker) finish(img *Image, hits int, err error) {
	t.once.Do(func() {
		close(t.stop)
		ev := t.ev
		ev.mu.Lock()
		e := ev.active[t.id]
		delete(ev.active, t.id)
		e.Repeat = false
		e.Time = time.Now()
		e.Seconds = e.Time.Sub(e.Started).Seconds()
		e.Done, e.Total, e.Unit = 0, 0, ""
		if err != nil {
			e.Phase, e.Error, e.Cause = PhaseFailed, shortError(err), Cause(err)
			ev.failed.add(*e, ev.history)
		} else {
			e.Phase, e.Key, e.Layers, e.CacheHits = PhaseDone, img.Key, len(img.layers), hits
			for _, l := range img.layers {
				e.Bytes += l.Size
			}
			ev.done.add(*e, ev.history)
		}
		out := *e
		ls := ev.publishLocked(out)
		ev.mu.Unlock()
		for _, l := range ls {
			l(out)
		}
	})
}

// shortError is an error's message cut to its first line and 300 bytes:
// Nix's short message, not its log.
func shortError(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Subscribe returns a channel of every build's events from now on, and a
// function that ends the subscription (and closes the channel). A
// subscriber that does not keep up loses events beyond buf (at least 16);
// builds in progress re-publish their progress every 100 ms (with Repeat
// set), so it catches up. [Builder.Active] gives the builds in progress
// at the time of subscribing.
func (b *Builder) Subscribe(buf int) (<-chan Event, func()) {
	c := make(chan Event, max(buf, 16))
	b.events.mu.Lock()
	b.events.subs[c] = struct{}{}
	b.events.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			b.events.mu.Lock()
			delete(b.events.subs, c)
			b.events.mu.Unlock()
			close(c)
		})
	}
}

// Listen calls f with every event, on the goroutine of the build that
// publishes it; f must be quick and must not call back into the Builder's
// events. It suits metrics; use [Builder.Subscribe] otherwise.
func (b *Builder) Listen(f func(Event)) {
	b.events.mu.Lock()
	b.events.listeners = append(slices.Clone(b.events.listeners), f)
	b.events.mu.Unlock()
}

// Active returns the latest event of every build in progress, the oldest
// first.
func (b *Builder) Active() []Event {
	b.events.mu.Lock()
	out := make([]Event, 0, len(b.events.active))
	for _, e := range b.events.active {
		out = append(out, *e)
	}
	b.events.mu.Unlock()
	slices.SortFunc(out, func(x, y Event) int { return cmp.Compare(x.Build, y.Build) })
	return out
}

// Recent returns the last events of the builds that finished and, apart,
// of those that failed, the newest first: at most [DefaultHistory] of
// each.
func (b *Builder) Recent() (done, failed []Event) {
	b.events.mu.Lock()
	defer b.events.mu.Unlock()
	return b.events.done.newestFirst(), b.events.failed.newestFirst()
}
