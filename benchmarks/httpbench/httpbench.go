// Package httpbench measures the registry's HTTP serving side by side with
// the fastest plain net/http equivalent, using the wrk load generator on
// loopback:
//
//   - [Manifest]: a cached manifest GET from [registry.Registry] against a
//     bare handler that writes the same bytes with the same headers. Targets:
//     at least 0.8x the bare handler's requests per second, median latency at
//     most 1.25x.
//   - [Blob]: a blob GET from the registry against [http.ServeFile] on the
//     same file (500 MB by default). Target: at least 0.8x the throughput.
//
// This is the project's one benchmark of HTTP serving: the harness
// (benchmarks/cmd/harness) runs both measurements as its "http" stage and
// writes their figures into the results. Both servers run in this process,
// each on its own 127.0.0.1 listener, and wrk loads them in turn with the
// same settings (64 connections for manifests, 4 for the blob, 2 threads; a
// warm-up of 1 s per server, then two alternating rounds of 10 s per server
// by default). Running wrk,
// parsing its report and the side-by-side rounds are package speed's:
// [speed.ManifestLatency] for the manifest, [speed.Compare] for the blob.
//
// The registry is the real handler with the real filesystem blob store,
// layer assembler and grouping; only Nix is replaced, by a realiser that
// returns one store path made in a temporary directory, because what is
// measured is serving, not building. The registry logs one
// line per request to a file through a [registry.LogBuffer], as `nixery
// serve` does to its standard error.
package httpbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nixery-go/nixery/benchmarks/speed"
	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/registry"
)

// Options configure a measurement. The zero value gives the defaults.
type Options struct {
	// Connections is wrk's -c for [Manifest]; 0 means 64.
	Connections int
	// BlobConnections is wrk's -c for [Blob]; 0 means 4, since every
	// response is hundreds of megabytes.
	BlobConnections int
	// Threads is wrk's -t; 0 means 2.
	Threads int
	// Duration of each wrk run; 0 means 10 s.
	Duration time.Duration
	// BlobSize is the size of the blob [Blob] serves; 0 means 500 MB.
	BlobSize int64
	// Dir holds the blob store, layer cache and request log; "" means a
	// new temporary directory, removed afterwards.
	Dir string
	// Rounds is how many times each server is loaded, alternating which
	// goes first; 0 means 2. The runs of each side are combined as
	// [speed.Compare] does: counts added up, rates and percentiles
	// averaged.
	Rounds int
}

func (o *Options) defaults() {
	if o.Connections <= 0 {
		o.Connections = 64
	}
	if o.Threads <= 0 {
		o.Threads = 2
	}
	if o.BlobConnections <= 0 {
		o.BlobConnections = 4
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.BlobSize <= 0 {
		o.BlobSize = 500 << 20
	}
	if o.Rounds <= 0 {
		o.Rounds = 2
	}
}

// Result is one side-by-side measurement: the Comparison's Server is the
// registry, its Baseline the bare net/http handler or [http.ServeFile], its
// Bytes the response body size.
type Result struct {
	Name string // "manifest" or "blob"
	speed.Comparison
}

// Target describes the project's target for the measurement; Met reports
// whether r meets it.
func (r Result) Target() string {
	if r.Name == "blob" {
		return "throughput >= 0.80x the baseline's"
	}
	return "requests per second >= 0.80x and median latency <= 1.25x the baseline's"
}

// Met reports whether r meets [Result.Target].
func (r Result) Met() bool {
	if r.Name == "blob" {
		return r.ThroughputRatio() >= 0.8
	}
	return r.RequestsRatio() >= 0.8 && r.MedianRatio() <= 1.25
}

func (r Result) String() string {
	line := func(n string, x *speed.WrkResult) string {
		return fmt.Sprintf("  %-9s %10.0f req/s %9.1f MB/s  p50 %-9v p90 %-9v p99 %-9v (%d requests, %d errors)\n",
			n, x.RequestsPerSec, x.BytesPerSec/1e6, x.P50, x.P90, x.P99, x.Requests, x.NonSuccess+x.SocketErrors)
	}
	return fmt.Sprintf("%s (%d-byte body):\n%s%s  ratios: requests %.2fx, median latency %.2fx, throughput %.2fx\n",
		r.Name, r.Bytes, line("registry", r.Server), line("baseline", r.Baseline),
		r.RequestsRatio(), r.MedianRatio(), r.ThroughputRatio())
}

// wrkOptions are the settings of a comparison against url with conns
// connections.
func (o *Options) wrkOptions(url string, conns int) speed.WrkOptions {
	return speed.WrkOptions{
		URL:         url,
		Connections: conns,
		Threads:     o.Threads,
		Duration:    o.Duration,
		Timeout:     60 * time.Second,
		Warmup:      time.Second,
		Rounds:      o.Rounds,
	}
}

// result checks c for socket errors, which speed.Compare counts but
// tolerates, and names it.
func result(name string, c *speed.Comparison) (Result, error) {
	for _, r := range []*speed.WrkResult{c.Server, c.Baseline} {
		if r.SocketErrors > 0 {
			return Result{}, fmt.Errorf("httpbench: %s: %d socket errors (timeouts included) in %d requests", name, r.SocketErrors, r.Requests)
		}
	}
	return Result{Name: name, Comparison: *c}, nil
}

// bench is a registry with one image built and cached.
type bench struct {
	dir      string
	store    *layers.FSStore
	reg      *registry.Registry
	manifest string // path of the cached manifest
	cleanup  func()
}

// fakeNix realises every request as one store path made in a temporary
// root, from a pinned package set.
type fakeNix struct{ path string }

func (f fakeNix) Build(ctx context.Context, req nix.Request) (*nix.Result, error) {
	g, err := closure.New([]closure.Path{{Path: f.path, NarSize: 4096}}, []string{f.path})
	if err != nil {
		return nil, err
	}
	var pkgs []nix.Package
	for _, p := range req.Packages {
		pkgs = append(pkgs, nix.Package{Name: p, Attr: p, Path: f.path})
	}
	return &nix.Result{Graph: g, Packages: pkgs}, nil
}

func (fakeNix) CacheKey(string) (string, bool, error) { return "httpbench", true, nil }

func (fakeNix) Popularity(context.Context) (*nix.Popularity, error) {
	return &nix.Popularity{Map: closure.Popularity{}, Fingerprint: "none"}, nil
}

func newBench(ctx context.Context, opts Options) (*bench, error) {
	b := &bench{dir: opts.Dir, cleanup: func() {}}
	if b.dir == "" {
		d, err := os.MkdirTemp("", "httpbench-")
		if err != nil {
			return nil, err
		}
		b.dir = d
		b.cleanup = func() { os.RemoveAll(d) }
	}
	fail := func(err error) (*bench, error) { b.cleanup(); return nil, err }
	root := filepath.Join(b.dir, "root")
	storePath := "/nix/store/" + strings.Repeat("0", 32) + "-httpbench-1.0"
	if err := os.MkdirAll(filepath.Join(root, storePath, "bin"), 0o755); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(root, storePath, "bin", "hello"), bytes.Repeat([]byte("hello\n"), 512), 0o755); err != nil {
		return fail(err)
	}
	store, err := layers.NewFSStore(filepath.Join(b.dir, "store"))
	if err != nil {
		return fail(err)
	}
	asm, err := layers.NewAssembler(store, filepath.Join(b.dir, "cache"), layers.Options{Root: root, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fail(err)
	}
	logf, err := os.Create(filepath.Join(b.dir, "requests.log"))
	if err != nil {
		return fail(err)
	}
	log := slog.New(slog.NewTextHandler(logf, nil))
	ib, err := images.New(ctx, images.Config{
		Nix:     fakeNix{storePath},
		Store:   store,
		Layers:  asm,
		StoreFS: os.DirFS(root),
		Logger:  log,
	})
	if err != nil {
		logf.Close()
		return fail(err)
	}
	reg := registry.New(ib, registry.WithLogger(log))
	prev := b.cleanup
	b.cleanup = func() { reg.Close(); ib.Close(); logf.Close(); prev() }
	b.store, b.reg = store, reg
	b.manifest = "/v2/httpbench/manifests/latest"
	return b, nil
}

// serve starts h on a new 127.0.0.1 listener.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// Manifest measures a cached manifest GET (Docker format, the default)
// against a bare handler writing the same bytes and headers; the first GET
// builds and caches the image.
func Manifest(ctx context.Context, opts Options) (Result, error) {
	opts.defaults()
	b, err := newBench(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	defer b.cleanup()
	regURL, stopReg, err := serve(b.reg)
	if err != nil {
		return Result{}, err
	}
	defer stopReg()
	c, err := speed.ManifestLatency(ctx, opts.wrkOptions(regURL+b.manifest, opts.Connections))
	if err != nil {
		return Result{}, err
	}
	return result("manifest", c)
}

// Blob measures a blob GET of opts.BlobSize random bytes from the registry
// against http.ServeFile on the same file of the blob store, with
// opts.BlobConnections connections. Throughput counts every byte read,
// including those of responses still under way when wrk stops, and a
// response may take up to 60 s before it counts as a timeout.
func Blob(ctx context.Context, opts Options) (Result, error) {
	opts.defaults()
	b, err := newBench(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	defer b.cleanup()
	h, err := writeRandomBlob(ctx, b.store, opts.BlobSize)
	if err != nil {
		return Result{}, err
	}
	rc, err := b.store.Open(ctx, h)
	if err != nil {
		return Result{}, err
	}
	f, ok := rc.(*os.File)
	if !ok {
		rc.Close()
		return Result{}, errors.New("httpbench: the filesystem store did not return an *os.File")
	}
	file := f.Name()
	f.Close()
	regURL, stopReg, err := serve(b.reg)
	if err != nil {
		return Result{}, err
	}
	defer stopReg()
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) })
	c, err := speed.Compare(ctx, opts.wrkOptions(regURL+"/v2/httpbench/blobs/"+h.String(), opts.BlobConnections), bare, opts.BlobSize)
	if err != nil {
		return Result{}, err
	}
	return result("blob", c)
}

// writeRandomBlob stores size incompressible bytes.
func writeRandomBlob(ctx context.Context, store layers.BlobStore, size int64) (v1.Hash, error) {
	w, err := store.Create(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	hw := newHashWriter(w)
	rng := rand.NewChaCha8([32]byte{'n', 'i', 'x', 'e', 'r', 'y'})
	if _, err := io.CopyN(hw, rng, size); err != nil {
		w.Cancel()
		return v1.Hash{}, err
	}
	h := hw.sum()
	return h, w.Commit(h)
}
