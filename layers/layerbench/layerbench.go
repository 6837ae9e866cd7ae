// Package layerbench measures layer assembly on a fake Nix store made of the
// host's files, so that the layers benchmarks and the project's benchmark
// harness (benchmarks/) measure the same work the same way.
//
// [FakeClosure] builds (once per machine, then reuses) a store of at least
// the requested size under os.TempDir(). Each measurement returns a
// [Result]: bytes of closure tar in, bytes out, wall time. All of them
// consume the same bytes, the layer's uncompressed tar as written by
// [layers.WriteTar]:
//
//	Cold         layers.Assembler.Layer with empty caches
//	Warm.Run     a new combination of store paths compressed before
//	Bare         the same work on one goroutine: tar -> klauspost gzip, with
//	             the sha256 of its input and output
//	External     tar -> an external compressor (gzip -6, pigz -6 -p2)
//	StreamLayer  tar -> go-containerregistry's stream.Layer
package layerbench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/klauspost/compress/gzip"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
)

// Sources are the host directories FakeClosure takes files from, in order of
// preference.
var Sources = []string{
	"/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/lib/jvm", "/usr/local/go",
	"/usr/lib", "/usr/libexec", "/usr/sbin", "/usr/share", "/opt",
}

// Closure is a fake store: directories below Root/nix/store named like
// store paths, holding copies (hard links where possible) of host files.
type Closure struct {
	Root  string   // for layers.Options.Root
	Paths []string // store paths, sorted
	Bytes int64    // bytes of regular files
}

// maxLoose is the most bytes of loose files of one source directory put in
// one store path.
const maxLoose = 32 << 20

// group is a would-be store path: host files below one directory.
type group struct {
	name  string
	src   string   // directory
	files []string // relative to src; nil means the whole directory
	bytes int64
}

// FakeClosure returns a fake store holding at least minBytes of host files.
// The store is made once under os.TempDir()/nixery-layerbench-<key>, where
// key hashes the chosen files' names, sizes and modification times, and
// reused by later calls and processes.
//
// Every subdirectory of a source directory becomes a store path; the source's
// loose files are grouped into store paths of at most 32 MiB. Store paths
// are taken in an order that mixes the sources (by a hash of their names),
// skipping any that would take the total more than 1/8 over minBytes, until
// minBytes is reached, so a closure holds large and small paths alike, like
// a real one.
func FakeClosure(minBytes int64) (*Closure, error) {
	var groups []group
	for _, src := range Sources {
		gs, err := groupsOf(src)
		if err != nil {
			continue
		}
		groups = append(groups, gs...)
	}
	sort.Slice(groups, func(i, j int) bool {
		hi, hj := sha256.Sum256([]byte(groups[i].name)), sha256.Sum256([]byte(groups[j].name))
		return string(hi[:]) < string(hj[:])
	})
	var chosen []group
	var total int64
	key := sha256.New()
	fmt.Fprintln(key, "layerbench/v1", minBytes)
	for _, g := range groups {
		if total >= minBytes {
			break
		}
		if g.bytes == 0 || total+g.bytes > minBytes+minBytes/8 {
			continue // empty, or would overshoot by more than 1/8
		}
		chosen = append(chosen, g)
		total += g.bytes
		fmt.Fprintln(key, g.name, g.bytes, len(g.files))
	}
	if total < minBytes {
		return nil, fmt.Errorf("layerbench: the host has only %d bytes of files in %v, want %d", total, Sources, minBytes)
	}
	root := filepath.Join(os.TempDir(), fmt.Sprintf("nixery-layerbench-%x", key.Sum(nil)[:8]))
	c := &Closure{Root: root, Bytes: total}
	for _, g := range chosen {
		c.Paths = append(c.Paths, testutil.StorePath(g.name))
	}
	sort.Strings(c.Paths)
	if b, err := os.ReadFile(filepath.Join(root, "complete")); err == nil {
		var done Closure
		if json.Unmarshal(b, &done) == nil && strings.Join(done.Paths, " ") == strings.Join(c.Paths, " ") {
			return &done, nil
		}
	}
	os.RemoveAll(root)
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	var bytes int64
	for _, g := range chosen {
		dst := filepath.Join(tmp, testutil.StorePath(g.name))
		n, err := copyGroup(g, dst)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		bytes += n
	}
	c.Bytes = bytes
	b, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(tmp, "complete"), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, root); err != nil {
		return nil, err
	}
	return c, nil
}

// groupsOf lists the would-be store paths of one source directory.
func groupsOf(src string) ([]group, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, err
	}
	base := strings.ReplaceAll(strings.Trim(src, "/"), "/", "-")
	var gs []group
	loose := group{name: fmt.Sprintf("%s-files-0", base), src: src, files: []string{}}
	for _, e := range entries {
		switch {
		case e.IsDir():
			n := du(filepath.Join(src, e.Name()))
			gs = append(gs, group{name: sanitize(base + "-" + e.Name()), src: filepath.Join(src, e.Name()), bytes: n})
		case e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0:
			fi, err := e.Info()
			if err != nil {
				continue
			}
			size := int64(0)
			if fi.Mode().IsRegular() {
				size = fi.Size()
			}
			if loose.bytes+size > maxLoose && len(loose.files) > 0 {
				gs = append(gs, loose)
				loose = group{name: fmt.Sprintf("%s-files-%d", base, len(gs)), src: src, files: []string{}}
			}
			loose.files = append(loose.files, e.Name())
			loose.bytes += size
		}
	}
	if len(loose.files) > 0 {
		gs = append(gs, loose)
	}
	return gs, nil
}

// du returns the bytes of regular files below dir.
func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+-._?=", r) {
			return r
		}
		return '_'
	}, s)
}

// copyGroup copies a group's files to dst, keeping symlinks and hard-linking
// regular files when it can (the layer reads them either way).
func copyGroup(g group, dst string) (int64, error) {
	var n int64
	copyOne := func(src, dst string, d fs.DirEntry) error {
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
			if os.Link(src, dst) == nil {
				return nil
			}
			return copyFile(src, dst, fi.Mode())
		}
		return nil // sockets, devices: not in a Nix store
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	if g.files != nil {
		for _, f := range g.files {
			fi, err := os.Lstat(filepath.Join(g.src, f))
			if err != nil {
				continue
			}
			if err := copyOne(filepath.Join(g.src, f), filepath.Join(dst, f), fs.FileInfoToDirEntry(fi)); err != nil {
				return n, err
			}
		}
		return n, nil
	}
	err := filepath.WalkDir(g.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip
		}
		rel, _ := filepath.Rel(g.src, p)
		return copyOne(p, filepath.Join(dst, rel), d)
	})
	return n, err
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return nil // unreadable: skip
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm()|0o200)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Result is one measurement.
type Result struct {
	In       int64         // bytes of uncompressed closure tar consumed
	Out      int64         // compressed bytes produced
	Duration time.Duration // wall time
	// CPU is the user+system time of this process (and, for External,
	// of the compressor) during the measurement. On a machine shared with
	// other work, CPU/Duration shows how many cores the measurement got.
	CPU time.Duration
}

// Cores returns CPU/Duration: the cores the measurement kept busy.
func (r Result) Cores() float64 { return r.CPU.Seconds() / r.Duration.Seconds() }

// MBps returns the throughput in MB/s (10^6 bytes) of closure tar.
func (r Result) MBps() float64 { return float64(r.In) / r.Duration.Seconds() / 1e6 }

func (r Result) String() string {
	return fmt.Sprintf("%d -> %d bytes in %v: %.1f MB/s, %.2f cores", r.In, r.Out, r.Duration.Round(time.Millisecond), r.MBps(), r.Cores())
}

// Cold builds the layer of the whole closure with empty caches in a
// temporary directory below dir ("" means os.TempDir()), which it removes.
func Cold(ctx context.Context, c *Closure, dir string, opts layers.Options) (Result, error) {
	tmp, err := os.MkdirTemp(dir, "layerbench-cold-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(tmp)
	store, err := layers.NewFSStore(filepath.Join(tmp, "blobs"))
	if err != nil {
		return Result{}, err
	}
	opts.Root = c.Root
	a, err := layers.NewAssembler(store, filepath.Join(tmp, "cache"), opts)
	if err != nil {
		return Result{}, err
	}
	start, cpu0 := time.Now(), cpuTime()
	d, err := a.Layer(ctx, c.Paths)
	if err != nil {
		return Result{}, err
	}
	dur, cpu := time.Since(start), cpuTime()-cpu0
	tarSize, err := tarSizeOf(ctx, a, c)
	if err != nil {
		return Result{}, err
	}
	return Result{In: tarSize, Out: d.Size, Duration: dur, CPU: cpu}, nil
}

// tarSizeOf returns the tar bytes of c's layer from the member cache.
func tarSizeOf(ctx context.Context, a *layers.Assembler, c *Closure) (int64, error) {
	var stats []layers.PathStats
	for _, p := range c.Paths {
		st, err := a.PathStats(ctx, p)
		if err != nil {
			return 0, err
		}
		stats = append(stats, st)
	}
	n, _ := a.Sizes(stats)
	return n, nil
}

// Warm measures layers made of store paths compressed before.
type Warm struct {
	c       *Closure
	dir     string
	cache   string
	opts    layers.Options
	tarSize int64
	Stats   []layers.PathStats // per store path of the closure
}

// NewWarm compresses every store path of c once into a member cache below
// dir ("" means os.TempDir()). Close removes it.
func NewWarm(ctx context.Context, c *Closure, dir string, opts layers.Options) (*Warm, error) {
	tmp, err := os.MkdirTemp(dir, "layerbench-warm-")
	if err != nil {
		return nil, err
	}
	opts.Root = c.Root
	w := &Warm{c: c, dir: tmp, cache: filepath.Join(tmp, "cache"), opts: opts}
	store, err := layers.NewFSStore(filepath.Join(tmp, "blobs"))
	if err != nil {
		return nil, err
	}
	a, err := layers.NewAssembler(store, w.cache, opts)
	if err != nil {
		return nil, err
	}
	for _, p := range c.Paths {
		st, err := a.PathStats(ctx, p)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		w.Stats = append(w.Stats, st)
	}
	w.tarSize, _ = a.Sizes(w.Stats)
	return w, nil
}

// Run builds, from the member cache, the layer of every store path but the
// i-th (modulo their number): a combination not built before, into a fresh
// blob store and layer cache. Only the assembly is timed.
func (w *Warm) Run(ctx context.Context, i int) (Result, error) {
	skip := i % len(w.c.Paths)
	paths := make([]string, 0, len(w.c.Paths)-1)
	stats := make([]layers.PathStats, 0, len(w.c.Paths)-1)
	for j, p := range w.c.Paths {
		if j != skip || len(w.c.Paths) == 1 {
			paths = append(paths, p)
			stats = append(stats, w.Stats[j])
		}
	}
	blobs := filepath.Join(w.dir, "blobs")
	os.RemoveAll(blobs)
	os.RemoveAll(filepath.Join(w.cache, "layers"))
	store, err := layers.NewFSStore(blobs)
	if err != nil {
		return Result{}, err
	}
	a, err := layers.NewAssembler(store, w.cache, w.opts)
	if err != nil {
		return Result{}, err
	}
	start, cpu0 := time.Now(), cpuTime()
	d, err := a.Layer(ctx, paths)
	if err != nil {
		return Result{}, err
	}
	dur, cpu := time.Since(start), cpuTime()-cpu0
	in, out := a.Sizes(stats)
	if out != d.Size {
		return Result{}, fmt.Errorf("layerbench: warm layer has %d bytes, its paths' stats say %d", d.Size, out)
	}
	return Result{In: in, Out: d.Size, Duration: dur, CPU: cpu}, nil
}

// Close removes the member cache.
func (w *Warm) Close() error { return os.RemoveAll(w.dir) }

// counter counts bytes and discards them.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// Bare measures the work of a cold build on one goroutine: the closure's
// tar (layers.WriteTar) through the sha256 of the tar and a klauspost gzip
// writer at level, whose output goes through a sha256 and is discarded.
func Bare(ctx context.Context, c *Closure, level int) (Result, error) {
	out := &counter{}
	digest := sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(out, digest), level)
	if err != nil {
		return Result{}, err
	}
	diffID := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(diffID, zw), 1<<20)
	start, cpu0 := time.Now(), cpuTime()
	n, err := layers.WriteTar(ctx, bw, c.Root, c.Paths)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return Result{}, err
	}
	diffID.Sum(nil)
	digest.Sum(nil)
	return Result{In: n, Out: out.n, Duration: time.Since(start), CPU: cpuTime() - cpu0}, nil
}

// External measures the closure's tar piped into an external compressor,
// such as {"gzip", "-6"} or {"pigz", "-6", "-p2"}, whose output is
// discarded. The tar is written by this process, as `tar` would.
func External(ctx context.Context, c *Closure, argv ...string) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("layerbench: no command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out := &counter{}
	cmd.Stdout = out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, err
	}
	start, cpu0 := time.Now(), cpuTime()
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	bw := bufio.NewWriterSize(stdin, 1<<20)
	n, err := layers.WriteTar(ctx, bw, c.Root, c.Paths)
	if err == nil {
		err = bw.Flush()
	}
	stdin.Close()
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return Result{}, fmt.Errorf("layerbench: %s: %w", strings.Join(argv, " "), err)
	}
	return Result{In: n, Out: out.n, Duration: time.Since(start), CPU: cpuTime() - cpu0}, nil
}

// StreamLayer measures go-containerregistry's stream.Layer (tar ->
// MultiWriter(DiffID hash, gzip) -> MultiWriter(pipe, digest hash)) at the
// given gzip level on the closure's tar, reading its compressed stream to
// the end.
func StreamLayer(ctx context.Context, c *Closure, level int) (Result, error) {
	pr, pw := io.Pipe()
	var n int64
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		var err error
		n, err = layers.WriteTar(ctx, bw, c.Root, c.Paths)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	start, cpu0 := time.Now(), cpuTime()
	l := stream.NewLayer(pr, stream.WithCompressionLevel(level))
	rc, err := l.Compressed()
	if err != nil {
		return Result{}, err
	}
	out := &counter{}
	if _, err := io.Copy(out, rc); err != nil {
		return Result{}, err
	}
	if err := rc.Close(); err != nil {
		return Result{}, err
	}
	if _, err := l.Digest(); err != nil {
		return Result{}, err
	}
	return Result{In: n, Out: out.n, Duration: time.Since(start), CPU: cpuTime() - cpu0}, nil
}
