package nix

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nixery-go/nixery/closure"
)

//go:embed resolve.nix
var resolveExpr string

// DefaultTimeout bounds one [Builder.Build] unless [Options.Timeout] says
// otherwise (NIX_TIMEOUT in the server).
const DefaultTimeout = 60 * time.Second

// DefaultMaxConcurrent is how many Builds run Nix at once unless
// [Options.MaxConcurrent] says otherwise (NIXERY_MAX_BUILDS in the server).
const DefaultMaxConcurrent = 2

// DefaultMaxQueue is how many Builds may wait for one of the
// [Options.MaxConcurrent] slots unless [Options.MaxQueue] says otherwise
// (NIXERY_MAX_QUEUE in the server).
const DefaultMaxQueue = 32

// DefaultNixConfig is the Nix configuration given to every Nix process
// unless [Options.NixConfig] says otherwise: single-user, offline, no
// sandbox, and the nix command enabled for `nix path-info`. With it, Nix
// runs as root without /etc/nix/nix.conf and without a daemon.
const DefaultNixConfig = `substituters =
build-users-group =
sandbox = false
experimental-features = nix-command`

// NoNixConfig, as [Options.NixConfig], adds no configuration at all: Nix
// then reads only nix.conf and the NIX_CONFIG of the environment.
const NoNixConfig = "-"

// Systems are the systems a [Request] may name.
var Systems = []string{"x86_64-linux", "aarch64-linux"}

// DefaultSystem is used when a [Request] names none.
const DefaultSystem = "x86_64-linux"

// Options configure a [Builder]. The zero value is usable.
type Options struct {
	// Timeout bounds one Build from its call, the wait for a slot and all
	// Nix processes together; on expiry the processes are killed and Build
	// returns an error wrapping [ErrTimeout]. Zero means [DefaultTimeout].
	Timeout time.Duration
	// MaxConcurrent bounds how many Builds run Nix at once; others wait.
	// Zero means [DefaultMaxConcurrent]. This is the one bound on Nix runs
	// of a server.
	MaxConcurrent int
	// MaxQueue bounds how many Builds wait for a slot; a Build that finds
	// the queue full returns a [*BusyError] at once. Zero means
	// [DefaultMaxQueue]; a negative value lets no Build wait.
	MaxQueue int
	// Logger receives one record per Nix command (with its duration) and
	// Nix's standard error (Debug on success, Error on failure). Nil
	// discards.
	Logger *slog.Logger
	// NixDir is the directory holding nix-instantiate, nix-store and nix.
	// Empty means a PATH lookup.
	NixDir string
	// NixConfig is put in front of the NIX_CONFIG of every Nix process.
	// Empty means [DefaultNixConfig]; [NoNixConfig] adds nothing.
	NixConfig string
	// GCRootDir, when set, receives an indirect GC root for the outputs of
	// every Build, so that `nix-collect-garbage` keeps them until the
	// caller calls [Result.Release].
	GCRootDir string
	// PopularityURL, when set, is where [Builder.Popularity] reads the
	// package set's popularity from: a file path, a file:// URL or an
	// http(s) URL of upstream Nixery's JSON format.
	PopularityURL string
	// PopularityDir, when set, keeps the popularity computed for a
	// listable source (the bundled set), so it is computed once per
	// machine rather than once per process.
	PopularityDir string
	// SharedPopularity, when set, keeps the popularity computed for a
	// listable source where other servers find it (an object store that
	// replicas share): a server with an empty PopularityDir takes it from
	// there instead of computing it, so every replica groups layers
	// alike without Nix.
	SharedPopularity SharedPopularity
	// OnCommand, when set, is called after every Nix process with its
	// operation ("evaluate", "build" or "query"), its duration and its
	// error: the hook for metrics of Nix runs.
	OnCommand func(op string, d time.Duration, err error)
}

// Builder realises packages of a [Source] with Nix and reports their
// runtime closure. It is safe for concurrent use.
type Builder struct {
	src  Source
	opts Options
	env  []string
	sem  chan struct{} // one token per Build running Nix
	run  runFunc
	pop  popularityState

	waiting atomic.Int64 // Builds waiting for a slot
	meanRun atomic.Int64 // moving mean of the time a slot is held, in ns
	gc      gcRoots
	listing listingState
}

// NewBuilder returns a builder for packages of src.
func NewBuilder(src Source, opts Options) *Builder {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	switch {
	case opts.MaxQueue == 0:
		opts.MaxQueue = DefaultMaxQueue
	case opts.MaxQueue < 0:
		opts.MaxQueue = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	config := opts.NixConfig
	switch config {
	case "":
		config = DefaultNixConfig
	case NoNixConfig:
		config = ""
	}
	if _, ok := src.(*BundledSource); ok && config != "" {
		config += "\n" + BundledNixConfig
	}
	b := &Builder{
		src:  src,
		opts: opts,
		env:  mergeEnv(os.Environ(), config),
		sem:  make(chan struct{}, opts.MaxConcurrent),
	}
	b.run = b.execNix
	return b
}

// Source returns the builder's package source.
func (b *Builder) Source() Source { return b.src }

// CacheKey returns the cache key of the builder's source for tag; see
// [Source].
func (b *Builder) CacheKey(tag string) (string, bool, error) { return b.src.CacheKey(tag) }

// Request asks for packages of one package set.
type Request struct {
	// Packages are attribute names, possibly dotted ("python3Packages.six").
	Packages []string
	// System is "x86_64-linux" (the default when empty) or "aarch64-linux".
	System string
	// Tag is the image tag; it selects the version of a git source.
	Tag string
	// Started, when set, is called once the Build has a slot, just before
	// the first Nix process starts. Until then the Build is only queued,
	// and a caller may end ctx to cancel it at no cost; after it, ending
	// ctx kills Nix and wastes the work done.
	Started func()
	// Progress, when set, is told what the Build does once it has a slot:
	// phase "evaluating" while nix-instantiate runs, then "realising" with
	// done of total derivations as nix-store --realise builds them (total
	// 0 while unknown or when nothing is to be built). It is called on
	// the Build's goroutines and must be quick.
	Progress func(phase string, done, total int)
}

// Package is one requested name and what it resolved to.
type Package struct {
	// Name is the name as requested, e.g. "bashinteractive".
	Name string
	// Attr is the attribute path it resolved to, e.g. "bashInteractive".
	Attr string
	// Path is the store path of the package's default output.
	Path string
}

// Result is a realised request.
type Result struct {
	// Graph is the runtime closure of the requested outputs, which are its
	// roots.
	Graph *closure.Graph
	// Packages has one entry per requested name, in request order.
	Packages []Package

	root string // the GC root, until Release
}

// resolved is resolve.nix's answer.
type resolved struct {
	Unknown  []string `json:"unknown"`
	Packages []struct {
		Name     string `json:"name"`
		AttrPath string `json:"attrPath"`
		Drv      string `json:"drv"`
		Out      string `json:"out"`
	} `json:"packages"`
}

// Build resolves, realises and queries req:
//
//  1. every name is checked with [ValidateName] and the system against
//     [Systems] (and the source's own list), before any Nix runs;
//  2. the Build waits for one of [Options.MaxConcurrent] slots, or returns
//     a [*BusyError] at once if [Options.MaxQueue] Builds wait already;
//  3. nix-instantiate evaluates resolve.nix with the request as a JSON
//     string, which looks the names up and writes the derivations;
//     unknown names are reported together as [*UnknownPackagesError];
//  4. nix-store --realise builds the derivations;
//  5. nix path-info --json --recursive reports the closure, parsed with
//     [closure.ParsePathInfo].
//
// The whole Build, the wait for a slot included, is bounded by
// [Options.Timeout].
func (b *Builder) Build(ctx context.Context, req Request) (*Result, error) {
	return b.buildWithin(ctx, req, b.opts.Timeout)
}

// buildWithin is Build bounded by timeout.
func (b *Builder) buildWithin(ctx context.Context, req Request, timeout time.Duration) (*Result, error) {
	if len(req.Packages) == 0 {
		return nil, errors.New("nix: no packages requested")
	}
	for _, n := range req.Packages {
		if err := ValidateName(n); err != nil {
			return nil, err
		}
	}
	system := req.System
	if system == "" {
		system = DefaultSystem
	}
	if !slices.Contains(Systems, system) {
		return nil, &UnsupportedSystemError{System: system, Reason: "supported: " + strings.Join(Systems, ", ")}
	}
	imp, err := b.src.Import(req.Tag)
	if err != nil {
		return nil, err
	}
	if len(imp.Systems) > 0 && !slices.Contains(imp.Systems, system) {
		return nil, &UnsupportedSystemError{
			System: system,
			Reason: fmt.Sprintf("the %s only provides %s", b.src, strings.Join(imp.Systems, ", ")),
		}
	}

	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	queued := time.Now()
	if err := b.acquire(ctx); err != nil {
		if errors.Is(err, ErrTimeout) {
			return nil, fmt.Errorf("%w after %s waiting for a build slot (%s)", ErrTimeout, timeout, b.src)
		}
		return nil, err
	}
	started := time.Now()
	defer b.release(started)
	if req.Started != nil {
		req.Started()
	}

	res, err := b.build(ctx, imp, system, req.Packages, req.Progress)
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrTimeout) {
			return nil, fmt.Errorf("%w after %s, %s of it waiting for a build slot (%s)",
				ErrTimeout, timeout, started.Sub(queued).Round(time.Millisecond), b.src)
		}
		return nil, classify(err, system, imp, req.Tag)
	}
	return res, nil
}

// acquire takes a slot, waiting in the queue while there is room in it
// and ctx lasts.
func (b *Builder) acquire(ctx context.Context) error {
	select {
	case b.sem <- struct{}{}:
		return nil
	default:
	}
	if n := b.waiting.Add(1); n > int64(b.opts.MaxQueue) {
		b.waiting.Add(-1)
		return &BusyError{Running: b.opts.MaxConcurrent, Queued: b.opts.MaxQueue, After: b.retryAfter()}
	}
	defer b.waiting.Add(-1)
	select {
	case b.sem <- struct{}{}:
		if ctx.Err() != nil { // both were ready: the slot goes to another
			<-b.sem
			return context.Cause(ctx)
		}
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// release gives the slot taken at start back and folds the time it was
// held into the moving mean.
func (b *Builder) release(start time.Time) {
	<-b.sem
	d := int64(time.Since(start))
	for {
		old := b.meanRun.Load()
		mean := d
		if old > 0 {
			mean = old + (d-old)/8
		}
		if b.meanRun.CompareAndSwap(old, mean) {
			return
		}
	}
}

// retryAfter estimates when a full queue will have had its turn: the mean
// time a slot is held times the queue's length over the slots, at least a
// second and at most the timeout.
func (b *Builder) retryAfter() time.Duration {
	rounds := (b.opts.MaxQueue + b.opts.MaxConcurrent - 1) / b.opts.MaxConcurrent
	d := time.Duration(b.meanRun.Load()) * time.Duration(max(rounds, 1))
	return min(max(d, time.Second), b.opts.Timeout)
}

func (b *Builder) build(ctx context.Context, imp Import, system string, names []string, progress func(string, int, int)) (*Result, error) {
	if progress == nil {
		progress = func(string, int, int) {}
	}
	progress("evaluating", 0, 0)
	reqJSON, err := json.Marshal(struct {
		Source Import   `json:"source"`
		System string   `json:"system"`
		Names  []string `json:"names"`
	}{imp, system, names})
	if err != nil {
		return nil, err
	}
	out, err := b.run(ctx, command{
		op:   "evaluate",
		prog: "nix-instantiate",
		args: []string{"--eval", "--strict", "--json", "--read-write-mode",
			"--expr", resolveExpr, "--argstr", "request", string(reqJSON)},
		logArgs: []string{"--eval", "--strict", "--json", "--read-write-mode",
			"--expr", "<resolve.nix>", "--argstr", "request", string(reqJSON)},
	})
	if err != nil {
		return nil, err
	}
	var r resolved
	if err := json.Unmarshal(out.stdout, &r); err != nil {
		return nil, &BuildError{Op: "evaluate", Err: fmt.Errorf("unexpected output: %v", err), Log: tail(out.stderr)}
	}
	if len(r.Unknown) > 0 {
		u := slices.Clone(r.Unknown)
		slices.Sort(u)
		return nil, &UnknownPackagesError{Names: slices.Compact(u)}
	}
	if len(r.Packages) != len(names) {
		return nil, &BuildError{Op: "evaluate", Err: fmt.Errorf("resolved %d of %d packages", len(r.Packages), len(names))}
	}

	pkgs := make([]Package, len(names))
	var drvs, outs []string
	for i, p := range r.Packages {
		if !closure.ValidStorePath(p.Out) || !strings.HasSuffix(p.Drv, ".drv") {
			return nil, &BuildError{Op: "evaluate", Err: fmt.Errorf("%s: unexpected store paths %q, %q", names[i], p.Drv, p.Out)}
		}
		pkgs[i] = Package{Name: names[i], Attr: p.AttrPath, Path: p.Out}
		drvs = append(drvs, p.Drv)
		outs = append(outs, p.Out)
	}
	slices.Sort(drvs)
	drvs = slices.Compact(drvs)
	slices.Sort(outs)
	outs = slices.Compact(outs)

	query := command{
		op:   "query",
		prog: "nix",
		args: append([]string{"path-info", "--json", "--recursive"}, outs...),
	}
	root, err := b.gc.add(b.opts.GCRootDir, closure.Name(outs[0]))
	if err != nil {
		return nil, err
	}
	progress("realising", 0, 0)
	res, err := b.realise(ctx, root, drvs, query, outs, pkgs, progress)
	if err != nil {
		releaseRoot(root)
		return nil, err
	}
	res.root = root
	return res, nil
}

// realise builds the derivations drvs, adding root (if not "") as an
// indirect GC root of their outputs, and queries the closure.
func (b *Builder) realise(ctx context.Context, root string, drvs []string, query command, outs []string, pkgs []Package, progress func(string, int, int)) (*Result, error) {
	args := []string{"--realise"}
	if root != "" {
		args = append(args, "--add-root", root) // indirect: a link in gcroots/auto points to it
	} else {
		// Outputs already in the store need no nix-store process when no
		// root is wanted: the query alone tells whether they are valid.
		quiet := query
		quiet.quiet = true
		if out, err := b.run(ctx, quiet); err == nil {
			return graph(out, outs, pkgs)
		} else if ctx.Err() != nil {
			return nil, err
		}
	}
	rp := &realiseProgress{report: progress}
	if _, err := b.run(ctx, command{op: "build", prog: "nix-store", args: append(args, drvs...), progress: rp}); err != nil {
		return nil, err
	}
	progress("realising", rp.total, rp.total)
	out, err := b.run(ctx, query)
	if err != nil {
		return nil, err
	}
	return graph(out, outs, pkgs)
}

// graph parses the output of nix path-info into the result.
func graph(out output, roots []string, pkgs []Package) (*Result, error) {
	paths, err := closure.ParsePathInfo(out.stdout)
	if err != nil {
		return nil, &BuildError{Op: "query", Err: err, Log: tail(out.stderr)}
	}
	g, err := closure.New(paths, roots)
	if err != nil {
		return nil, &BuildError{Op: "query", Err: err}
	}
	return &Result{Graph: g, Packages: pkgs}, nil
}

// classify turns Nix's complaints about systems into
// [*UnsupportedSystemError]s and those of git about a ref or commit that a
// git source does not have into errors wrapping [ErrUnknownTag], and passes
// other errors on.
func classify(err error, system string, imp Import, tag string) error {
	var be *BuildError
	if !errors.As(err, &be) {
		return err
	}
	for _, line := range strings.Split(be.Log, "\n") {
		switch {
		case strings.Contains(line, "nixery-unsupported-system"):
			_, reason, _ := strings.Cut(line, "nixery-unsupported-system: ")
			return &UnsupportedSystemError{System: system, Reason: strings.TrimSpace(reason)}
		case strings.Contains(line, "is required to build") && strings.Contains(line, "but I am a"):
			return &UnsupportedSystemError{System: system, Reason: strings.TrimSpace(strings.TrimPrefix(line, "error:"))}
		case imp.Kind == "git" && missingRef(line):
			what := "branch"
			if imp.Rev != "" {
				what = "commit"
			}
			return fmt.Errorf("%w %q: the git repository %s has no such %s", ErrUnknownTag, truncate(tag, 64), imp.URL, what)
		}
	}
	return err
}

// missingRef reports whether a line of Nix's or git's standard error says
// that fetchGit found no such ref or commit: git fetching from a remote
// ("couldn't find remote ref", "not our ref"), git asked about a local
// working tree ("unknown revision"), or Nix looking for a commit ("Cannot
// find Git revision").
func missingRef(line string) bool {
	for _, s := range []string{"couldn't find remote ref", "not our ref", "unknown revision or path not in the working tree", "Cannot find Git revision"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// shortHash returns 16 hex digits of the SHA-256 of paths.
func shortHash(paths []string) string {
	sum := sha256.Sum256([]byte(strings.Join(paths, "\n")))
	return hex.EncodeToString(sum[:8])
}
