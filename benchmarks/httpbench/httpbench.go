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
// Both servers run in this process, each on its own 127.0.0.1 listener, and
// wrk loads them in turn with the same settings (64 connections for
// manifests, 4 for the blob, 2 threads; two alternating rounds of 10 s per
// server by default). The registry is the real handler with the real
// filesystem blob store, layer assembler and grouping; only Nix is replaced,
// by a realiser that returns one store path made in a temporary directory,
// because what is measured is serving, not building. The registry logs one
// line per request to a file through a [registry.LogBuffer], as `nixery
// serve` does to its standard error.
//
// wrk reports through a Lua done() hook, so no text is scraped: requests,
// bytes, errors and latency percentiles come out as JSON.
package httpbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
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
	// Wrk is the wrk binary; "" means "wrk" from PATH.
	Wrk string
	// Rounds is how many times each server is loaded, alternating which
	// goes first; 0 means 2. The runs of each side are added up;
	// percentiles are averaged.
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
	if o.Wrk == "" {
		o.Wrk = "wrk"
	}
	if o.Rounds <= 0 {
		o.Rounds = 2
	}
}

// Run is what wrk measured against one server.
type Run struct {
	Requests       int64
	Errors         int64 // socket errors and non-2xx responses
	Bytes          int64 // bytes read, headers included
	Duration       time.Duration
	RequestsPerSec float64
	BytesPerSec    float64
	P50, P90, P99  time.Duration
}

// Result is one side-by-side measurement.
type Result struct {
	Name     string // "manifest" or "blob"
	Body     int64  // response body size in bytes
	Registry Run    // the registry handler
	Baseline Run    // the bare net/http handler or http.ServeFile
}

// RequestsRatio is the registry's requests per second over the baseline's.
func (r Result) RequestsRatio() float64 { return r.Registry.RequestsPerSec / r.Baseline.RequestsPerSec }

// MedianRatio is the registry's median latency over the baseline's.
func (r Result) MedianRatio() float64 { return float64(r.Registry.P50) / float64(r.Baseline.P50) }

// ThroughputRatio is the registry's bytes per second over the baseline's.
func (r Result) ThroughputRatio() float64 { return r.Registry.BytesPerSec / r.Baseline.BytesPerSec }

func (r Result) String() string {
	line := func(n string, x Run) string {
		return fmt.Sprintf("  %-9s %10.0f req/s %9.1f MB/s  p50 %-9v p90 %-9v p99 %-9v (%d requests, %d errors)\n",
			n, x.RequestsPerSec, x.BytesPerSec/1e6, x.P50, x.P90, x.P99, x.Requests, x.Errors)
	}
	return fmt.Sprintf("%s (%d-byte body):\n%s%s  ratios: requests %.2fx, median latency %.2fx, throughput %.2fx\n",
		r.Name, r.Body, line("registry", r.Registry), line("baseline", r.Baseline),
		r.RequestsRatio(), r.MedianRatio(), r.ThroughputRatio())
}

// bench is a registry with one image built and cached.
type bench struct {
	dir      string
	store    *layers.FSStore
	reg      *registry.Registry
	manifest string // path of the cached manifest
	layer    v1.Hash
	cleanup  func()
}

// fakeRealiser returns one store path made in a temporary root.
type fakeRealiser struct{ path string }

func (f fakeRealiser) Realise(ctx context.Context, req registry.Request) (*registry.Realised, error) {
	g, err := closure.New([]closure.Path{{Path: f.path, NarSize: 4096}}, []string{f.path})
	if err != nil {
		return nil, err
	}
	var pkgs []registry.Package
	for _, p := range req.Packages {
		pkgs = append(pkgs, registry.Package{Name: p, Attr: p, Path: f.path})
	}
	return &registry.Realised{Graph: g, Packages: pkgs}, nil
}

type pinned struct{}

func (pinned) CacheKey(string) (string, bool, error) { return "httpbench", true, nil }

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
	logs := registry.NewLogBuffer(logf) // as `nixery serve` logs to stderr
	closeLogs := func() { logs.Close() }
	reg, err := registry.New(registry.Config{
		Realiser: fakeRealiser{storePath},
		Source:   pinned{},
		Store:    store,
		Layers:   asm,
		Group:    layers.Group,
		StoreFS:  os.DirFS(root),
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		closeLogs()
		logf.Close()
		return fail(err)
	}
	prev := b.cleanup
	b.cleanup = func() { reg.Close(); closeLogs(); logf.Close(); prev() }
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
// against a bare handler writing the same bytes and headers.
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
	// The first GET builds and caches the image.
	body, hdr, err := get(ctx, regURL+b.manifest, nil)
	if err != nil {
		return Result{}, err
	}
	ctype, dig, clen := hdr.Get("Content-Type"), hdr.Get("Docker-Content-Digest"), strconv.Itoa(len(body))
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Content-Length", clen)
		h.Set("Docker-Content-Digest", dig)
		w.Write(body)
	})
	bareURL, stopBare, err := serve(bare)
	if err != nil {
		return Result{}, err
	}
	defer stopBare()
	res := Result{Name: "manifest", Body: int64(len(body))}
	res.Registry, res.Baseline, err = sideBySide(ctx, opts, regURL+b.manifest, bareURL+b.manifest)
	return res, err
}

// Blob measures a blob GET of opts.BlobSize random bytes from the registry
// against http.ServeFile on the same file of the blob store, with
// opts.BlobConnections connections. Throughput counts every byte read,
// including those of responses still under way when wrk stops.
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
	bareURL, stopBare, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, file) }))
	if err != nil {
		return Result{}, err
	}
	defer stopBare()
	blobPath := "/v2/httpbench/blobs/" + h.String()
	if _, _, err := get(ctx, regURL+blobPath, http.Header{"Range": {"bytes=0-0"}}); err != nil {
		return Result{}, err
	}
	res := Result{Name: "blob", Body: opts.BlobSize}
	opts.Connections = opts.BlobConnections
	res.Registry, res.Baseline, err = sideBySide(ctx, opts, regURL+blobPath, bareURL+blobPath)
	return res, err
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

func get(ctx context.Context, url string, hdr http.Header) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("httpbench: GET %s: %s: %.200s", url, resp.Status, body)
	}
	return body, resp.Header, nil
}

// doneScript makes wrk print its summary as one JSON line.
const doneScript = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('HTTPBENCH {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
`

// wrk runs the load generator against url and parses its report.
func wrk(ctx context.Context, opts Options, url string) (Run, error) {
	script := filepath.Join(os.TempDir(), fmt.Sprintf("httpbench-%d.lua", os.Getpid()))
	if err := os.WriteFile(script, []byte(doneScript), 0o644); err != nil {
		return Run{}, err
	}
	defer os.Remove(script)
	secs := max(1, int(opts.Duration.Round(time.Second)/time.Second))
	threads := min(opts.Threads, opts.Connections)
	cmd := exec.CommandContext(ctx, opts.Wrk,
		"-c", strconv.Itoa(opts.Connections), "-t", strconv.Itoa(threads),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "60s", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Run{}, fmt.Errorf("httpbench: %s: %v: %s", opts.Wrk, err, out)
	}
	return parseWrk(out)
}

// parseWrk reads the JSON line the done() hook writes.
func parseWrk(out []byte) (Run, error) {
	_, rest, ok := bytes.Cut(out, []byte("HTTPBENCH "))
	if !ok {
		return Run{}, fmt.Errorf("httpbench: no summary in wrk output: %.300s", out)
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	var s struct {
		Requests   int64 `json:"requests"`
		DurationUS int64 `json:"duration_us"`
		Bytes      int64 `json:"bytes"`
		Errors     int64 `json:"errors"`
		P50US      int64 `json:"p50_us"`
		P90US      int64 `json:"p90_us"`
		P99US      int64 `json:"p99_us"`
	}
	if err := json.Unmarshal(line, &s); err != nil {
		return Run{}, fmt.Errorf("httpbench: wrk summary %q: %v", line, err)
	}
	if s.DurationUS <= 0 || s.Requests <= 0 && s.Bytes <= 0 {
		return Run{}, fmt.Errorf("httpbench: wrk completed no requests: %s", line)
	}
	d := time.Duration(s.DurationUS) * time.Microsecond
	r := Run{
		Requests:       s.Requests,
		Errors:         s.Errors,
		Bytes:          s.Bytes,
		Duration:       d,
		RequestsPerSec: float64(s.Requests) / d.Seconds(),
		BytesPerSec:    float64(s.Bytes) / d.Seconds(),
		P50:            time.Duration(s.P50US) * time.Microsecond,
		P90:            time.Duration(s.P90US) * time.Microsecond,
		P99:            time.Duration(s.P99US) * time.Microsecond,
	}
	if r.Errors > 0 {
		return r, fmt.Errorf("httpbench: %d of %d requests failed", r.Errors, r.Requests)
	}
	return r, nil
}

// sideBySide loads the baseline and the registry in turn, opts.Rounds times
// each, after a short warm-up of both. The order alternates from round to
// round: whichever server is loaded second in a pair measured some 8% slower
// when both were the same bare handler, so a fixed order would bias the
// comparison.
func sideBySide(ctx context.Context, opts Options, regURL, bareURL string) (reg, bare Run, err error) {
	warm := opts
	warm.Duration = time.Second
	for _, u := range []string{bareURL, regURL} {
		if _, err := wrk(ctx, warm, u); err != nil {
			return Run{}, Run{}, err
		}
	}
	var regs, bares []Run
	for i := range opts.Rounds {
		order := []string{bareURL, regURL}
		if i%2 == 1 {
			order = []string{regURL, bareURL}
		}
		for _, u := range order {
			r, err := wrk(ctx, opts, u)
			if err != nil {
				return Run{}, Run{}, err
			}
			if u == regURL {
				regs = append(regs, r)
			} else {
				bares = append(bares, r)
			}
		}
	}
	return combine(regs), combine(bares), nil
}

// combine adds runs up; percentiles are averaged.
func combine(runs []Run) Run {
	var c Run
	for _, r := range runs {
		c.Requests += r.Requests
		c.Errors += r.Errors
		c.Bytes += r.Bytes
		c.Duration += r.Duration
		c.P50 += r.P50 / time.Duration(len(runs))
		c.P90 += r.P90 / time.Duration(len(runs))
		c.P99 += r.P99 / time.Duration(len(runs))
	}
	c.RequestsPerSec = float64(c.Requests) / c.Duration.Seconds()
	c.BytesPerSec = float64(c.Bytes) / c.Duration.Seconds()
	return c
}
