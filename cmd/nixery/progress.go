package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

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

// buildPhases is a slog.Handler that turns the records the builder logs
// while it builds an image into phases of a progress: Nix's evaluation,
// the realisation of the store paths, the query of the closure, the
// layers as they are built. Every record also goes to next (the -v log, or
// nothing).
type buildPhases struct {
	next slog.Handler
	p    *progress
	st   *phaseState
}

type phaseState struct {
	mu         sync.Mutex
	imageName  string
	popularity bool // the popularity is being computed
	nixRuns    int
	layers     int
	layerBytes int64
}

func newBuildPhases(next slog.Handler, p *progress) *buildPhases {
	return &buildPhases{next: next, p: p, st: &phaseState{}}
}

// start begins the build of imageName.
func (h *buildPhases) start(imageName string) {
	h.st.mu.Lock()
	h.st.imageName = imageName
	h.st.mu.Unlock()
	h.p.Phase("evaluating %s", imageName)
}

func (h *buildPhases) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *buildPhases) Handle(ctx context.Context, r slog.Record) error {
	h.observe(r)
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *buildPhases) WithAttrs(as []slog.Attr) slog.Handler {
	return &buildPhases{next: h.next.WithAttrs(as), p: h.p, st: h.st}
}

func (h *buildPhases) WithGroup(name string) slog.Handler {
	return &buildPhases{next: h.next.WithGroup(name), p: h.p, st: h.st}
}

// nixRuns is how many Nix commands the build ran.
func (h *buildPhases) nixRuns() int {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	return h.st.nixRuns
}

func (h *buildPhases) observe(r slog.Record) {
	attrs := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.Resolve()
		return true
	})
	st := h.st
	st.mu.Lock()
	defer st.mu.Unlock()
	switch r.Message {
	case "computing the package set's popularity":
		// The bundled set's popularity is computed once per storage
		// directory, from the closure of every package, before the
		// first build: its Nix runs are not the image's.
		st.popularity = true
		h.p.Phase("computing the package set's popularity (once per storage directory)")
	case "popularity ready":
		if st.popularity {
			st.popularity = false
			h.p.Phase("evaluating %s", st.imageName)
		}
	case "nix command":
		st.nixRuns++
		if st.popularity || attrs["err"].Any() != nil {
			return
		}
		switch attrs["op"].String() {
		case "evaluate":
			if strings.Contains(attrs["args"].String(), "<resolve.nix>") {
				h.p.Phase("realising the store paths")
			}
		case "build":
			h.p.Phase("reading the closure")
		case "query":
			h.p.Phase("building layers")
		}
	case "layer built":
		st.layers++
		st.layerBytes += attrs["blob_bytes"].Int64()
		h.p.Update("building layers: %d built, %s", st.layers, sizeText(st.layerBytes))
	}
}
