package images

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nixery-go/nixery/layers"
)

// DefaultScrubRate is the rate, in bytes per second, at which the
// background scrub hashes blobs unless [Config.ScrubRate] says otherwise:
// about 1% of one core's sha256, so that a scrub never competes with
// serving, and a pass over 100 GB in under 1.5 hours.
const DefaultScrubRate = 20_000_000

// scrubInterval is the time from the end of one scrub pass to the start
// of the next; scrubDelay the time from the start of the Builder to the
// first pass, which leaves the start to the server's own work.
const (
	scrubInterval = 24 * time.Hour
	scrubDelay    = 5 * time.Second
)

// ScrubStats is what one scrub pass found.
type ScrubStats struct {
	Blobs    int   // blobs hashed
	Bytes    int64 // their bytes
	Damaged  int   // blobs whose bytes did not hash to their name (quarantined)
	Repaired int   // of those, blobs rebuilt
}

func (b *Builder) scrubLoop() {
	defer b.wg.Done()
	if b.cfg.ScrubRate < 0 {
		return
	}
	select {
	case <-b.ctx.Done():
		return
	case <-time.After(scrubDelay):
	}
	for {
		if _, err := b.Scrub(b.ctx, b.cfg.ScrubRate); err != nil && b.ctx.Err() == nil {
			b.log.Warn("scrub failed", "error", err)
		}
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(scrubInterval):
		}
	}
}

// Scrub hashes every blob of the store against its digest, at most rate
// bytes a second (no bound if rate <= 0), and so finds what the
// [layers.Verifier] of Blob cannot see: bytes that rotted without a write.
// A damaged blob is quarantined and, if an image has it, rebuilt (or its
// images dropped; see [Builder.Blob]). The Builder scrubs a few seconds
// after it starts and then once a day, at [Config.ScrubRate]; each pass
// logs what it found.
func (b *Builder) Scrub(ctx context.Context, rate int64) (ScrubStats, error) {
	var st ScrubStats
	start := time.Now()
	var infos []layers.BlobInfo
	if err := b.cfg.Store.List(ctx, func(i layers.BlobInfo) error { infos = append(infos, i); return nil }); err != nil {
		return st, err
	}
	p := &pacer{rate: rate, start: time.Now()}
	for _, i := range infos {
		h := i.Digest
		err := b.verifier.Check(ctx, h, p.wait)
		switch {
		case err == nil:
			st.Blobs++
			st.Bytes += i.Size
		case errors.Is(err, layers.ErrDigestMismatch):
			st.Blobs++
			st.Bytes += i.Size
			st.Damaged++
			b.quarantine(ctx, h, err)
			if b.owned(ctx, h) && b.repair(ctx, h) == nil {
				st.Repaired++
			}
		case errors.Is(err, layers.ErrBlobUnknown):
			// deleted meanwhile
		case ctx.Err() != nil:
			return st, err
		default:
			b.log.Warn("scrub cannot read a blob", "digest", h, "error", err)
		}
	}
	lvl := slog.LevelInfo
	switch {
	case st.Damaged > st.Repaired:
		lvl = slog.LevelError
	case st.Blobs == 0:
		lvl = slog.LevelDebug
	}
	b.log.LogAttrs(ctx, lvl, "scrub", slog.Int("blobs", st.Blobs), slog.Int64("bytes", st.Bytes),
		slog.Int("damaged", st.Damaged), slog.Int("repaired", st.Repaired),
		slog.Duration("duration", time.Since(start).Round(time.Millisecond)))
	return st, nil
}

// pacer holds a scrub to rate bytes a second.
type pacer struct {
	rate  int64
	start time.Time
	done  int64
}

// wait sleeps until reading n more bytes keeps the rate.
func (p *pacer) wait(ctx context.Context, n int) error {
	p.done += int64(n)
	if p.rate <= 0 {
		return nil
	}
	due := p.start.Add(time.Duration(float64(p.done) / float64(p.rate) * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
