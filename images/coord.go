package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// StateStore is an optional capability of a shared [Config.Store] (with
// [RecordStore]; package layers/s3store has both): small objects that every
// server on the store sees, with the store's own time of their last write.
// With it, servers coordinate their garbage collections:
//
//   - Every build and every rebuild of a damaged blob has a marker,
//     inflight/<server>-<n>, written when it starts (its start is the
//     marker's first write time, read back from the store, so it is on the
//     store's clock, as the blobs' times are) and rewritten every
//     [buildBeat] until the build's record is saved. A collector deletes
//     no blob that no record has if it is younger than the start of the
//     oldest live marker (less a minute), whatever [Config.GCGrace] is: a
//     build slower than the grace keeps its new layers. A marker not
//     rewritten for [buildStale] is a dead server's; the next collection
//     deletes it.
//   - One server at a time collects: gc/lease names its holder, which
//     rewrites it at every collection. Another server takes it over once
//     it has not been rewritten for [leaseTTL] (the holder stopped). The
//     others only refresh their records, trim their own layer caches and
//     publish what they served (times/<server>), which the holder merges
//     into its ranking of images before it drops any.
//
// The lease is written, then read back after [leaseSettle]: of two servers
// that took an expired lease at once, only the last writer finds its name.
// A server stalled for longer than the settle between its reading and its
// writing of the lease could collect alongside the holder for one round;
// that is safe (the markers, not the lease, protect builds), it only
// duplicates work.
type StateStore interface {
	// PutState writes the object name ("a/b", segments of letters,
	// digits, '.', '_' and '-').
	PutState(ctx context.Context, name string, data []byte) error
	// GetState returns the object and when the store last wrote it, or
	// an error matching fs.ErrNotExist.
	GetState(ctx context.Context, name string) ([]byte, time.Time, error)
	// ListState calls fn with the name and write time of every object
	// whose name starts with prefix.
	ListState(ctx context.Context, prefix string, fn func(name string, mod time.Time) error) error
	// DeleteState removes the object; a missing one is not an error.
	DeleteState(ctx context.Context, name string) error
}

const (
	// buildBeat is how often a build's marker is rewritten.
	buildBeat = 30 * time.Second
	// buildStale is how long a marker may go unwritten before it is taken
	// for a dead server's.
	buildStale = 4 * buildBeat
	// markSlack is taken off the oldest live build's start, for the
	// stores' one-second times and clocks of the store's nodes.
	markSlack = time.Minute
	// leaseTTL is how long the collection lease lasts unrenewed.
	leaseTTL = 3 * gcInterval
	// timesStale is how long a server's published times are kept after
	// it last wrote them.
	timesStale = 7 * 24 * time.Hour
)

// leaseSettle is how long a server that wrote the lease waits before it
// reads it back (a variable for tests).
var leaseSettle = 2 * time.Second

const (
	markPrefix  = "inflight/"
	leaseName   = "gc/lease"
	timesPrefix = "times/"
)

// coord is a Builder's part in the coordination of servers.
type coord struct {
	st     StateStore // nil: no coordination, the local lock suffices
	server string     // this server's name in the store
	seq    atomic.Int64
}

// mark is the body of a build's marker.
type mark struct {
	Server  string    `json:"server"`
	Image   string    `json:"image"`
	Started time.Time `json:"started"`
}

// lease is the body of gc/lease.
type lease struct {
	Holder string `json:"holder"`
}

// serverName returns a name for this server: the host's, and random bytes,
// so that two processes on one host differ.
func serverName() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, host)
	if len(host) > 64 {
		host = host[:64]
	}
	var b [6]byte
	rand.Read(b[:])
	if host == "" {
		host = "nixery"
	}
	return host + "-" + hex.EncodeToString(b[:])
}

// startBuild writes the marker of a build of the image key (see
// [StateStore]) and keeps it alive until the returned function is called,
// which deletes it. Without a StateStore it does nothing. A marker that
// cannot be written is logged: the build goes on, and what another
// server's collector deletes meanwhile is rebuilt when its record is
// saved (see keep).
func (b *Builder) startBuild(key string) (end func()) {
	st := b.coord.st
	if st == nil {
		return func() {}
	}
	name := fmt.Sprintf("%s%s-%d", markPrefix, b.coord.server, b.coord.seq.Add(1))
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	m := mark{Server: b.coord.server, Image: key}
	body, _ := json.Marshal(m)
	err := st.PutState(ctx, name, body)
	var started time.Time
	if err == nil {
		_, started, err = st.GetState(ctx, name)
	}
	if err != nil {
		b.log.Warn("cannot write the marker of a build: other servers' collections may delete its new blobs, which are then rebuilt", "image", key, "error", err)
		return func() {}
	}
	m.Started = started
	body, _ = json.Marshal(m)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(buildBeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-b.ctx.Done():
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(b.ctx, buildBeat)
			if err := st.PutState(ctx, name, body); err != nil {
				b.log.Warn("cannot rewrite the marker of a build", "image", key, "error", err)
			}
			cancel()
		}
	}()
	return func() {
		close(stop)
		<-done
		ctx, cancel := context.WithTimeout(context.WithoutCancel(b.ctx), 30*time.Second)
		defer cancel()
		if err := st.DeleteState(ctx, name); err != nil {
			b.log.Warn("cannot delete the marker of a build; it expires", "image", key, "error", err)
		}
	}
}

// buildFloor returns the time before which a blob that no record has may
// be deleted: now less the grace, or earlier, before the start of the
// oldest build in progress on any server. It deletes the markers of dead
// servers. An error means no blob may be deleted.
func (b *Builder) buildFloor(ctx context.Context) (time.Time, error) {
	floor := time.Now().Add(-b.cfg.GCGrace)
	st := b.coord.st
	if st == nil {
		return floor, nil
	}
	var stale, live []string
	err := st.ListState(ctx, markPrefix, func(name string, mod time.Time) error {
		if time.Since(mod) > buildStale {
			stale = append(stale, name)
		} else {
			live = append(live, name)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("listing the markers of builds: %w", err)
	}
	for _, name := range stale {
		if err := st.DeleteState(ctx, name); err != nil {
			b.log.Warn("cannot delete a dead server's build marker", "marker", name, "error", err)
		} else {
			b.log.Info("deleted the build marker of a server that stopped", "marker", name)
		}
	}
	for _, name := range live {
		data, mod, err := st.GetState(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the build ended meanwhile
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("reading the marker of a build: %w", err)
		}
		var m mark
		if json.Unmarshal(data, &m) != nil || m.Started.IsZero() {
			m.Started = mod // written, not yet rewritten with its start
		}
		if t := m.Started.Add(-markSlack); t.Before(floor) {
			floor = t
		}
	}
	return floor, nil
}

// takeLease reports whether this server holds the collection lease (see
// [StateStore]), taking it when it is free or expired. Without a
// StateStore every server collects.
func (b *Builder) takeLease(ctx context.Context) (bool, error) {
	st := b.coord.st
	if st == nil {
		return true, nil
	}
	held := func() (string, time.Time, error) {
		data, mod, err := st.GetState(ctx, leaseName)
		if errors.Is(err, fs.ErrNotExist) {
			return "", time.Time{}, nil
		}
		if err != nil {
			return "", time.Time{}, err
		}
		var l lease
		if json.Unmarshal(data, &l) != nil {
			return "", time.Time{}, nil // damaged: free
		}
		return l.Holder, mod, nil
	}
	holder, mod, err := held()
	if err != nil {
		return false, fmt.Errorf("reading the collection lease: %w", err)
	}
	mine := holder == b.coord.server
	if holder != "" && !mine && time.Since(mod) < leaseTTL {
		return false, nil
	}
	body, _ := json.Marshal(lease{Holder: b.coord.server})
	if err := st.PutState(ctx, leaseName, body); err != nil {
		return false, fmt.Errorf("writing the collection lease: %w", err)
	}
	if !mine {
		select {
		case <-time.After(leaseSettle):
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if holder, _, err = held(); err != nil {
			return false, fmt.Errorf("reading the collection lease: %w", err)
		}
		if holder != b.coord.server {
			return false, nil
		}
		b.log.Info("took the garbage collection lease", "server", b.coord.server)
	}
	return true, nil
}

// publishTimes writes the last-requested times this server knows to
// times/<server>, for the lease holder.
func (b *Builder) publishTimes(ctx context.Context) error {
	st := b.coord.st
	if st == nil {
		return nil
	}
	t := times{Version: timesVersion, Requested: map[string]int64{}}
	for _, img := range b.index.all() {
		if u := img.used.Load(); u > 0 {
			t.Requested[img.Key] = u
		}
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return st.PutState(ctx, timesPrefix+b.coord.server, data)
}

// mergeTimes merges every server's published times into the images, and
// deletes those not written for timesStale.
func (b *Builder) mergeTimes(ctx context.Context) error {
	st := b.coord.st
	if st == nil {
		return nil
	}
	var names []string
	err := st.ListState(ctx, timesPrefix, func(name string, mod time.Time) error {
		if time.Since(mod) > timesStale {
			st.DeleteState(ctx, name)
			return nil
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == timesPrefix+b.coord.server {
			continue
		}
		data, _, err := st.GetState(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var t times
		if json.Unmarshal(data, &t) != nil || t.Version != timesVersion {
			b.log.Warn("ignoring damaged last-requested times", "object", name)
			continue
		}
		limit := time.Now().Add(24 * time.Hour).UnixMilli()
		for _, img := range b.index.all() {
			if u := t.Requested[img.Key]; u > img.used.Load() && u <= limit {
				img.used.Store(u)
			}
		}
	}
	return nil
}
