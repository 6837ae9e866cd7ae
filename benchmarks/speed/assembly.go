package speed

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
)

// Throughput is one contender's run over a set of store paths.
type Throughput struct {
	// Name says what ran: "nixery cold", "tar | gzip -6", ...
	Name string
	// InputBytes is the NAR size of the store paths: the same
	// denominator for every contender.
	InputBytes int64
	// OutputBytes is the compressed bytes produced (for a cached
	// assembly, the size of the blobs it found).
	OutputBytes int64
	// Duration is the wall-clock time.
	Duration time.Duration
	// CPU is the CPU time (user and system) this process used meanwhile,
	// and StoreCPU what AssemblyOptions.StoreCPU says the blob store's
	// own processes used; both are measured for the nixery contenders
	// only.
	CPU, StoreCPU time.Duration
}

// BytesPerSec is InputBytes over Duration.
func (t Throughput) BytesPerSec() float64 {
	if t.Duration <= 0 {
		return 0
	}
	return float64(t.InputBytes) / t.Duration.Seconds()
}

// Ratio is OutputBytes over InputBytes.
func (t Throughput) Ratio() float64 {
	if t.InputBytes == 0 {
		return 0
	}
	return float64(t.OutputBytes) / float64(t.InputBytes)
}

// AssemblyOptions configure [Assembly].
type AssemblyOptions struct {
	// Paths are the store paths to assemble, with their NAR sizes (see
	// [SelectPaths]). They must be realised.
	Paths []closure.Path
	// Layers is how many layers the paths are cut into; 0 means 10.
	Layers int
	// Layer configures the assembler (gzip level, workers, ...); the
	// zero value gives the layers package's defaults.
	Layer layers.Options
	// TmpDir holds the assembler's blob store and cache; "" means
	// os.TempDir(). Everything created there is removed at the end.
	TmpDir string
	// Baselines, when true, also times `tar | gzip -6`, `tar | pigz -6`
	// and the bare single-core work on the same groups of paths.
	Baselines bool
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// Store is where the layers are written; nil is a filesystem store
	// under TmpDir. A store passed here should be empty of these layers
	// (a fresh prefix), or Cold is not cold.
	Store layers.BlobStore
	// StoreCPU, if set, returns the CPU time the store's processes (an
	// object store on this machine) have used so far.
	StoreCPU func() (time.Duration, error)
}

// AssemblyResult holds the throughput of each contender on the same bytes.
type AssemblyResult struct {
	// Paths is the number of store paths, Layers the number of layers.
	Paths, Layers int
	// Cold is the layers package's Assembler with an empty cache: every
	// store path is read, tarred and compressed.
	Cold Throughput
	// ColdLayers are the layers Cold built, in the store.
	ColdLayers []layers.Descriptor
	// Warm builds a different grouping of the same paths (the groups
	// shifted by half a group) with the member cache that Cold filled:
	// the new layers are concatenations of cached gzip members, which is
	// what a new image made of known store paths costs.
	Warm Throughput
	// Cached asks again for Cold's layers: descriptor lookups only.
	Cached Throughput
	// TarGzip and TarPigz are `tar -C / -c PATHS | gzip -6` and
	// `... | pigz -6`, one pipeline per layer; Bare is the work a cold
	// build does, on one goroutine: the same tar through a sha256 (the
	// DiffID) and klauspost's gzip at the layers' level into a second
	// sha256 (the digest). All are zero when AssemblyOptions.Baselines is
	// false.
	TarGzip, TarPigz, Bare Throughput
}

// SelectPaths returns store paths of g, in store path order (which, the
// hashes being random, mixes packages of all sizes), until their NAR sizes
// add up to at least maxBytes; maxBytes <= 0 returns every path.
func SelectPaths(g *closure.Graph, maxBytes int64) []closure.Path {
	var out []closure.Path
	var total int64
	for _, p := range g.Paths() {
		if maxBytes > 0 && total >= maxBytes {
			break
		}
		out = append(out, p)
		total += p.NarSize
	}
	return out
}

// SamplePaths returns store paths of g, in store path order, skipping any
// that would take the total over maxBytes: a sample of at most maxBytes
// that mixes packages of all sizes.
func SamplePaths(g *closure.Graph, maxBytes int64) []closure.Path {
	var out []closure.Path
	var total int64
	for _, p := range g.Paths() {
		if total+p.NarSize <= maxBytes {
			out = append(out, p)
			total += p.NarSize
		}
	}
	return out
}

// Assembly measures layer assembly on opts.Paths. Before any contender
// runs, every file is read once, so all of them find the page cache warm
// (the project's machines are shared, so caches are not dropped).
func Assembly(ctx context.Context, opts AssemblyOptions) (*AssemblyResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(opts.Paths) == 0 {
		return nil, errors.New("speed: no store paths to assemble")
	}
	n := opts.Layers
	if n <= 0 {
		n = 10
	}
	// At least two paths per layer, so that the warm groups, shifted by
	// at least one path, are combinations not built before.
	n = max(min(n, len(opts.Paths)/2), 1)
	var input int64
	names := make([]string, len(opts.Paths))
	for i, p := range opts.Paths {
		names[i] = p.Path
		input += p.NarSize
	}
	cold := split(names, n, 0)
	warm := split(names, n, max(len(names)/n/2, 1)%len(names))

	tmp, err := os.MkdirTemp(opts.TmpDir, "nixery-speed-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root := opts.Layer.Root
	if root == "" {
		root = "/"
	}

	// Warm the page cache.
	if _, _, err := pipeline(ctx, root, names, nil, io.Discard); err != nil {
		return nil, err
	}

	store := opts.Store
	if store == nil {
		if store, err = layers.NewFSStore(filepath.Join(tmp, "store")); err != nil {
			return nil, err
		}
	}
	lopts := opts.Layer
	if lopts.Logger == nil {
		lopts.Logger = slog.New(slog.DiscardHandler)
	}
	asm, err := layers.NewAssembler(store, filepath.Join(tmp, "cache"), lopts)
	if err != nil {
		return nil, err
	}
	res := &AssemblyResult{Paths: len(names), Layers: n}
	var built []layers.Descriptor
	run := func(name string, groups [][]string) (Throughput, error) {
		t := Throughput{Name: name, InputBytes: input}
		var store0 time.Duration
		if opts.StoreCPU != nil {
			if store0, err = opts.StoreCPU(); err != nil {
				return t, err
			}
		}
		cpu0 := selfCPU()
		start := time.Now()
		// As images.Builder builds an image's layers.
		ds, err := layers.BuildAll(ctx, groups, asm.Layer, nil)
		if err != nil {
			return t, err
		}
		for _, d := range ds {
			t.OutputBytes += d.Size
		}
		built = ds
		t.Duration = time.Since(start)
		t.CPU = selfCPU() - cpu0
		if opts.StoreCPU != nil {
			store1, err := opts.StoreCPU()
			if err != nil {
				return t, err
			}
			t.StoreCPU = store1 - store0
		}
		log.Info("assembly", "contender", name, "bytes", input, "out", t.OutputBytes, "duration", t.Duration)
		return t, nil
	}
	if res.Cold, err = run("nixery cold", cold); err != nil {
		return nil, err
	}
	res.ColdLayers = built
	if res.Warm, err = run("nixery warm", warm); err != nil {
		return nil, err
	}
	if res.Cached, err = run("nixery cached", cold); err != nil {
		return nil, err
	}
	if !opts.Baselines {
		return res, nil
	}
	for _, c := range []struct {
		name string
		argv []string
		dst  *Throughput
	}{
		{"tar | gzip -6", []string{"gzip", "-6", "-c"}, &res.TarGzip},
		{"tar | pigz -6", []string{"pigz", "-6", "-c"}, &res.TarPigz},
	} {
		t := Throughput{Name: c.name, InputBytes: input}
		start := time.Now()
		for _, g := range cold {
			_, out, err := pipeline(ctx, root, g, c.argv, nil)
			if err != nil {
				return nil, err
			}
			t.OutputBytes += out
		}
		t.Duration = time.Since(start)
		log.Info("assembly", "contender", c.name, "bytes", input, "out", t.OutputBytes, "duration", t.Duration)
		*c.dst = t
	}
	level := opts.Layer.Level
	if level == 0 {
		level = layers.DefaultLevel
	}
	res.Bare = Throughput{Name: "bare single-core", InputBytes: input}
	start := time.Now()
	for _, g := range cold {
		out, err := bare(ctx, root, g, level)
		if err != nil {
			return nil, err
		}
		res.Bare.OutputBytes += out
	}
	res.Bare.Duration = time.Since(start)
	log.Info("assembly", "contender", res.Bare.Name, "bytes", input, "out", res.Bare.OutputBytes, "duration", res.Bare.Duration)
	return res, nil
}

// bare pipes `tar -C root -c PATHS` through a sha256 and a klauspost gzip
// writer at level whose output goes through a second sha256, all on the
// calling goroutine, and returns the compressed size.
func bare(ctx context.Context, root string, paths []string, level int) (int64, error) {
	cw := &counter{}
	digest := sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(cw, digest), level)
	if err != nil {
		return 0, err
	}
	diffID := sha256.New()
	_, _, err = pipeline(ctx, root, paths, nil, io.MultiWriter(diffID, zw))
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return 0, err
	}
	diffID.Sum(nil)
	digest.Sum(nil)
	return cw.n, nil
}

// split cuts names into n contiguous groups of nearly equal length, the
// cut points moved by shift (wrapping around).
func split(names []string, n, shift int) [][]string {
	rot := append(append([]string(nil), names[shift:]...), names[:shift]...)
	groups := make([][]string, 0, n)
	for i := 0; i < n; i++ {
		lo, hi := i*len(rot)/n, (i+1)*len(rot)/n
		if hi > lo {
			groups = append(groups, rot[lo:hi])
		}
	}
	return groups
}

// pipeline runs `tar -C root -c PATHS` piped into argv, or into sink when
// argv is nil, and returns the tar and output sizes. Paths are given to tar
// relative to root.
func pipeline(ctx context.Context, root string, paths []string, argv []string, sink io.Writer) (tarBytes, outBytes int64, err error) {
	args := []string{"-C", root, "-cf", "-"}
	for _, p := range paths {
		args = append(args, strings.TrimPrefix(p, "/"))
	}
	tarCmd := exec.CommandContext(ctx, "tar", args...)
	var tarErr, zipErr strings.Builder
	tarCmd.Stderr = &tarErr
	if argv == nil {
		cw := &counter{}
		tarCmd.Stdout = io.MultiWriter(cw, sink)
		if err := tarCmd.Run(); err != nil {
			return 0, 0, fmt.Errorf("speed: tar: %w: %s", err, tarErr.String())
		}
		return cw.n, 0, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	cw := &counter{}
	zip := exec.CommandContext(ctx, argv[0], argv[1:]...)
	zip.Stdin, zip.Stdout, zip.Stderr = r, cw, &zipErr
	tarCmd.Stdout = w
	zerr := zip.Start()
	r.Close()
	if zerr != nil {
		w.Close()
		return 0, 0, fmt.Errorf("speed: %s: %w (is it installed?)", argv[0], zerr)
	}
	terr := tarCmd.Run()
	w.Close()
	zerr = zip.Wait()
	if terr != nil {
		return 0, 0, fmt.Errorf("speed: tar: %w: %s", terr, tarErr.String())
	}
	if zerr != nil {
		return 0, 0, fmt.Errorf("speed: %s: %w: %s", argv[0], zerr, zipErr.String())
	}
	return 0, cw.n, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
