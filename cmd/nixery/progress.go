package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nixery-go/nixery/images"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Progress modes of `nixery build` and `nixery push` (-progress).
const (
	progressAuto  = "auto"  // bars on a terminal, plain lines otherwise
	progressBars  = "bars"  // bars even when stderr is not a terminal
	progressPlain = "plain" // plain lines
	progressNone  = "none"  // nothing
)

// plainInterval is how often plain mode reports the bytes of a transfer;
// plainHeartbeat how long a phase may go without a line before plain mode
// says it is still going (a cold build can realise for minutes).
const (
	plainInterval  = time.Second
	plainHeartbeat = 10 * time.Second
)

// progress reports what a command does on stderr: each phase of the build,
// then the bytes of the export or the push. On a terminal it draws progress
// bars with mpb (a spinner per phase, a bar per transfer); otherwise it
// writes a plain line per phase and a line a second per transfer, so that a
// CI log shows the same steps.
type progress struct {
	out   io.Writer
	start time.Time

	bars *mpb.Progress // nil in plain mode

	mu       sync.Mutex
	phase    *phaseText // the current phase
	since    time.Time
	lastLine time.Time // plain mode: when the last phase line was written
	none     bool

	stop, stopped chan struct{} // the plain mode's heartbeat
}

// phaseText is a phase's text and, in bars mode, its spinner, whose
// decorator reads the text.
type phaseText struct {
	mu    sync.Mutex
	text  string
	spin  *mpb.Bar
	final bool // a result, not a step: no duration of its own
}

func (t *phaseText) get() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.text
}

func (t *phaseText) set(s string) {
	t.mu.Lock()
	t.text = s
	t.mu.Unlock()
}

// newProgress returns a reporter writing to out in mode; auto chooses
// bars when out is a terminal.
func newProgress(ctx context.Context, out io.Writer, mode string) *progress {
	p := &progress{out: out, start: time.Now(), none: mode == progressNone}
	if mode == progressAuto {
		mode = progressPlain
		// A terminal of no size (a pty nobody sized) would show nothing.
		if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
				mode = progressBars
			}
		}
	}
	switch {
	case p.none:
	case mode == progressBars:
		p.bars = mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithRefreshRate(120*time.Millisecond), mpb.WithAutoRefresh())
	default:
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(p.stopped)
			tick := time.NewTicker(plainHeartbeat / 4)
			defer tick.Stop()
			for {
				select {
				case <-p.stop:
					return
				case now := <-tick.C:
					p.beat(now)
				}
			}
		}()
	}
	return p
}

// beat writes, in plain mode, that the current phase is still going if it
// has had no line for plainHeartbeat.
func (p *progress) beat(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase == nil || p.phase.final || now.Sub(p.lastLine) < plainHeartbeat {
		return
	}
	p.lastLine = now
	fmt.Fprintf(p.out, "nixery: [%5.1fs] still %s (%s)\n", now.Sub(p.start).Seconds(), p.phase.get(), now.Sub(p.since).Round(time.Second))
}

// logWriter is where log lines go while bars are drawn: above them.
func (p *progress) logWriter() io.Writer {
	if p.bars != nil {
		return p.bars
	}
	return p.out
}

// Phase ends the current phase and starts another.
func (p *progress) Phase(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endPhase()
	ph := &phaseText{text: text}
	p.phase, p.since = ph, time.Now()
	switch {
	case p.none:
	case p.bars != nil:
		ph.spin = p.bars.New(0, mpb.NopStyle(),
			mpb.PrependDecorators(
				decor.OnComplete(decor.Spinner(nil, decor.WC{W: 2, C: decor.DindentRight}), "✓ "),
				decor.Any(func(decor.Statistics) string { return ph.get() }),
			),
			mpb.AppendDecorators(decor.OnComplete(decor.Elapsed(decor.ET_STYLE_GO, decor.WC{W: 6}), "")),
		)
	default:
		p.lastLine = time.Now()
		fmt.Fprintf(p.out, "nixery: [%5.1fs] %s\n", time.Since(p.start).Seconds(), text)
	}
}

// Note ends the current phase with a result line.
func (p *progress) Note(format string, args ...any) {
	p.Phase(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase != nil {
		p.phase.final = true
	}
}

// Update changes the current phase's text without ending it (a bar's
// text; plain mode prints nothing).
func (p *progress) Update(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase != nil {
		p.phase.set(fmt.Sprintf(format, args...))
	}
}

// endPhase completes the current phase's spinner, its text with how long
// it took. p.mu is held.
func (p *progress) endPhase() {
	ph := p.phase
	p.phase = nil
	if ph == nil || ph.spin == nil {
		return
	}
	if !ph.final {
		ph.set(fmt.Sprintf("%s (%s)", ph.get(), time.Since(p.since).Round(time.Millisecond)))
	}
	ph.spin.SetTotal(-1, true)
}

// Bytes starts a transfer of total bytes (0 if not known yet) and returns
// its counter.
func (p *progress) Bytes(label string, total int64) *transfer {
	p.mu.Lock()
	p.endPhase()
	p.mu.Unlock()
	t := &transfer{p: p, label: label, total: total, start: time.Now()}
	switch {
	case p.none:
	case p.bars != nil:
		t.bar = p.bars.AddBar(total, mpb.BarWidth(40),
			mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(
				decor.CountersKiloByte("% .1f / % .1f", decor.WCSyncSpace),
				decor.OnComplete(decor.AverageSpeed(decor.SizeB1000(0), "% .1f", decor.WCSyncSpace), "done"),
			),
		)
	default:
		fmt.Fprintf(p.out, "nixery: [%5.1fs] %s: %s\n", time.Since(p.start).Seconds(), label, sizeText(total))
		t.last = time.Now()
	}
	return t
}

// Close ends the last phase and waits for the bars to be drawn.
func (p *progress) Close() {
	p.mu.Lock()
	p.endPhase()
	p.mu.Unlock()
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
		p.stop = nil
	}
	if p.bars != nil {
		p.bars.Wait()
		if p.bars.Error != nil {
			fmt.Fprintf(p.out, "nixery: drawing the progress: %v\n", p.bars.Error)
		}
	}
}

// A transfer counts the bytes of an export or a push.
type transfer struct {
	p     *progress
	label string
	bar   *mpb.Bar
	start time.Time

	mu    sync.Mutex
	total int64
	n     int64
	last  time.Time
	done  bool
}

// Set reports that n of total bytes are done; total may change (a push
// learns it from its first update).
func (t *transfer) Set(n, total int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.n = n
	if total > 0 {
		t.total = total
	}
	if t.bar != nil {
		if total > 0 {
			t.bar.SetTotal(total, false)
		}
		t.bar.SetCurrent(n)
		return
	}
	if !t.p.none && time.Since(t.last) >= plainInterval {
		t.last = time.Now()
		fmt.Fprintf(t.p.out, "nixery: [%5.1fs] %s: %s of %s\n", time.Since(t.p.start).Seconds(), t.label, sizeText(n), sizeText(t.total))
	}
}

// Add reports n more bytes done.
func (t *transfer) Add(n int64) {
	t.mu.Lock()
	cur := t.n + n
	t.mu.Unlock()
	t.Set(cur, 0)
}

// Done ends the transfer.
func (t *transfer) Done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	if t.bar != nil {
		t.bar.SetTotal(-1, true)
		return
	}
	if !t.p.none {
		d := time.Since(t.start)
		fmt.Fprintf(t.p.out, "nixery: [%5.1fs] %s: %s in %s\n", time.Since(t.p.start).Seconds(), t.label, sizeText(t.n), d.Round(time.Millisecond))
	}
}

// countingReader counts what is read through it into a transfer.
type countingReader struct {
	io.ReadCloser
	t *transfer
}

func (r countingReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	r.t.Add(int64(n))
	return n, err
}

// sizeText writes a byte count for people: 31.4 MB.
func sizeText(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// buildPhases turns the builder's progress events into phases of a
// progress: waiting for a Nix slot, Nix's evaluation, the realisation of
// the store paths (done of total), grouping, the layers' bytes as they are
// compressed, and writing the manifests. The popularity, which the builder
// waits for before it looks an image up, is a phase of its own when it is
// not ready at once.
type buildPhases struct {
	p *progress

	mu        sync.Mutex
	imageName string
	phase     images.Phase // the current build's phase, "" before one
	text      string       // the phase's line
	builds    int          // builds seen since start
}

func newBuildPhases(p *progress) *buildPhases { return &buildPhases{p: p} }

// popularityWait is how long the popularity may take before the progress
// shows that it is being computed.
const popularityWait = 100 * time.Millisecond

// start begins the lookup of imageName: first the popularity, which
// wait calls for (returning what it returns).
func (h *buildPhases) start(imageName string, wait func() error) error {
	h.mu.Lock()
	h.imageName, h.phase, h.text, h.builds = imageName, "", "", 0
	h.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(popularityWait):
		h.setPhase("computing the package set's popularity (once per storage directory)", "")
		err = <-done
	}
	h.setPhase("evaluating "+imageName, "")
	return err
}

// setPhase starts a phase with line text unless it is the current one,
// whose text then becomes update (if not empty).
func (h *buildPhases) setPhase(text, update string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if text != h.text {
		h.text = text
		h.p.Phase("%s", text)
	}
	if update != "" {
		h.p.Update("%s", update)
	}
}

// built reports whether the image came from a build (since start) rather
// than from the caches.
func (h *buildPhases) built() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.builds > 0
}

// event follows one of the builder's events ([nixery.Server.Listen]).
func (h *buildPhases) event(e images.Event) {
	h.mu.Lock()
	if e.Phase != h.phase {
		h.phase = e.Phase
		if e.Phase == images.PhaseQueued || e.Phase == images.PhaseEvaluating {
			h.builds++
		}
	}
	name := h.imageName
	h.mu.Unlock()
	switch e.Phase {
	case images.PhaseQueued:
		// Every build is queued for a moment; one that waits for a slot
		// is re-published with Repeat.
		if e.Repeat {
			h.setPhase("waiting for a Nix slot", "")
		}
	case images.PhaseEvaluating:
		h.setPhase("evaluating "+name, "")
	case images.PhaseRealising:
		update := ""
		if e.Total > 0 {
			update = fmt.Sprintf("realising the store paths: %d of %d", e.Done, e.Total)
		}
		h.setPhase("realising the store paths", update)
	case images.PhaseGrouping:
		h.setPhase("grouping the closure into layers", "")
	case images.PhaseCompressing:
		update := ""
		if e.Total > 0 {
			update = fmt.Sprintf("building layers: %s of %s", sizeText(e.Done), sizeText(e.Total))
		}
		h.setPhase("building layers", update)
	case images.PhaseWriting:
		h.setPhase("writing the manifests", "")
	}
}
