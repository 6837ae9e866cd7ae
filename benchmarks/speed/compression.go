package speed

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
)

// Setting is one compression setting of the layers package measured by
// [Compression]: a gzip level and a chunk size.
type Setting struct {
	Level, ChunkSize int
	// Throughput is a cold build of one layer of all the paths on one
	// compressing goroutine: its Ratio is compressed over NAR bytes, its
	// BytesPerSec the speed of one core.
	Throughput
}

// CompressionOptions configure [Compression].
type CompressionOptions struct {
	// Paths are the store paths, with their NAR sizes; they must be
	// realised below Root ("" means "/").
	Paths []closure.Path
	Root  string
	// Levels are measured at layers.DefaultChunkSize, ChunkSizes at
	// layers.DefaultLevel.
	Levels, ChunkSizes []int
	// TmpDir holds the temporary blob stores and caches; "" means
	// os.TempDir().
	TmpDir string
}

// Compression measures the size and single-core speed of the layer format at
// each gzip level and chunk size asked for: the figures behind
// layers.DefaultLevel and layers.DefaultChunkSize. The page cache is warmed
// first, so every setting reads the same cached files.
func Compression(ctx context.Context, opts CompressionOptions) ([]Setting, error) {
	if len(opts.Paths) == 0 {
		return nil, errors.New("speed: no store paths to compress")
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	var input int64
	names := make([]string, len(opts.Paths))
	for i, p := range opts.Paths {
		names[i] = p.Path
		input += p.NarSize
	}
	if _, _, err := pipeline(ctx, root, names, nil, io.Discard); err != nil {
		return nil, err
	}
	var settings []Setting
	for _, l := range opts.Levels {
		settings = append(settings, Setting{Level: l, ChunkSize: layers.DefaultChunkSize})
	}
	for _, c := range opts.ChunkSizes {
		settings = append(settings, Setting{Level: layers.DefaultLevel, ChunkSize: c})
	}
	for i := range settings {
		s := &settings[i]
		tmp, err := os.MkdirTemp(opts.TmpDir, "nixery-compression-")
		if err != nil {
			return nil, err
		}
		t, err := coldLayer(ctx, tmp, names, layers.Options{Level: s.Level, ChunkSize: s.ChunkSize, Workers: 1, Root: root})
		os.RemoveAll(tmp)
		if err != nil {
			return nil, err
		}
		t.InputBytes = input
		s.Throughput = t
	}
	return settings, nil
}

// coldLayer builds one layer of paths with an empty cache in dir.
func coldLayer(ctx context.Context, dir string, paths []string, opts layers.Options) (Throughput, error) {
	store, err := layers.NewFSStore(filepath.Join(dir, "store"))
	if err != nil {
		return Throughput{}, err
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	a, err := layers.NewAssembler(store, filepath.Join(dir, "cache"), opts)
	if err != nil {
		return Throughput{}, err
	}
	start := time.Now()
	d, err := a.Layer(ctx, paths)
	if err != nil {
		return Throughput{}, err
	}
	return Throughput{Name: "nixery cold", OutputBytes: d.Size, Duration: time.Since(start)}, nil
}
