package sim

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// SyntheticSizes gives every path of a synthetic universe a compressed size
// of a third of its NAR size, varied by ±20% with the path's hash so that
// equal NAR sizes do not give equal compressed sizes.
func SyntheticSizes(u *Universe) Sizes {
	s := Sizes{}
	for _, p := range u.Graph.Paths() {
		var h uint64
		for _, c := range []byte(p.Path) {
			h = (h ^ uint64(c)) * 1099511628211
		}
		f := 0.8 + 0.4*float64(h%1000)/1000
		s[p.Path] = int64(float64(p.NarSize) / 3 * f)
	}
	return s
}

// CompressionLevel is the gzip level [CompressPaths] uses.
const CompressionLevel = 6

// CompressPaths measures the compressed size of each store path for real:
// its files as a reproducible tar stream (sorted entries, uid/gid 0, fixed
// mtime, symlinks kept, hardlinks as regular files), through klauspost gzip
// at [CompressionLevel], as one gzip member. Each path is read once; workers
// (0 means GOMAXPROCS) compress paths in parallel.
func CompressPaths(ctx context.Context, paths []string, workers int) (Sizes, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	paths = append([]string(nil), paths...)
	sort.Strings(paths)
	sizes := make([]int64, len(paths))
	errs := make([]error, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sizes[i], errs[i] = compressedSize(ctx, paths[i])
			}
		}()
	}
	for i := range paths {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := Sizes{}
	for i, p := range paths {
		if errs[i] != nil {
			return nil, errs[i]
		}
		out[p] = sizes[i]
	}
	return out, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var epoch = time.Unix(1, 0).UTC()

func compressedSize(ctx context.Context, storePath string) (int64, error) {
	cw := &countWriter{}
	zw, err := gzip.NewWriterLevel(cw, CompressionLevel)
	if err != nil {
		return 0, err
	}
	tw := tar.NewWriter(zw)
	base := strings.TrimPrefix(storePath, "/")
	err = filepath.WalkDir(storePath, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(storePath, p)
		name := base
		if rel != "." {
			name = base + "/" + filepath.ToSlash(rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: epoch, Mode: int64(info.Mode().Perm()), Format: tar.FormatPAX}
		switch {
		case info.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			return nil
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sim: compressing %s: %w", storePath, err)
	}
	if err := tw.Flush(); err != nil { // no end-of-archive: a layer adds it once
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}
