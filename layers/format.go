package layers

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// FormatVersion names the canonical layer format described in the package
// documentation. It changes whenever the bytes of a layer built from the
// same store paths would change; it is part of every cache key.
const FormatVersion = "nixery-layer/v1"

// Defaults for [Options].
const (
	// DefaultLevel is the gzip level of layers. Every store path is
	// compressed once and then served from the member cache to every
	// image that holds it, while its compressed bytes are downloaded by
	// every client, so the level leans towards size: 6, the level of the
	// `gzip -6` and `pigz -6` the benchmarks compare with. Higher levels
	// cost much more time for little size, lower ones more size for
	// speed; the "Compression settings" table of the benchmark results
	// (benchmarks/results/latest/results.md) measures every level.
	DefaultLevel = 6
	// DefaultChunkSize is the number of uncompressed tar bytes of a store
	// path per gzip member. Each member restarts the deflate dictionary
	// and adds 18+ bytes of framing, so smaller members compress a little
	// worse, while they spread a single large store path over more cores
	// and need less memory in flight (one chunk per queue slot); the
	// same table measures 256 KiB and 4 MiB against this default.
	DefaultChunkSize = 1 << 20
)

// gzipOS is the OS byte of every gzip member header: 255, "unknown", so the
// bytes do not depend on the machine.
const gzipOS = 255

// compressor compresses chunks into single gzip members with a fixed header:
// no name, comment or extra field, zero mtime, OS byte 255.
type compressor struct {
	level int
	zw    *gzip.Writer
}

func newCompressor(level int) (*compressor, error) {
	zw, err := gzip.NewWriterLevel(nil, level)
	if err != nil {
		return nil, fmt.Errorf("layers: gzip level %d: %w", level, err)
	}
	return &compressor{level: level, zw: zw}, nil
}

// member appends to dst the gzip member holding p.
func (c *compressor) member(dst *bytes.Buffer, p []byte) error {
	c.zw.Reset(dst)
	c.zw.Header = gzip.Header{OS: gzipOS}
	if _, err := c.zw.Write(p); err != nil {
		return err
	}
	return c.zw.Close()
}

// compressorVersion is the version of github.com/klauspost/compress linked
// into the binary: its deflate output is part of the format.
var compressorVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/klauspost/compress" {
				if d.Replace != nil {
					d = d.Replace
				}
				return d.Version
			}
		}
	}
	return "unknown"
})

// formatID is the full name of the format produced with the given level and
// chunk size. Besides FormatVersion it names the compressor's version and
// the Go release (whose archive/tar encodes the headers), so that caches
// written by a different build are never mixed with this one's output.
func formatID(level, chunkSize int) string {
	return fmt.Sprintf("%s gzip=klauspost/%s level=%d chunk=%d tar=pax go=%s",
		FormatVersion, compressorVersion(), level, chunkSize, runtime.Version())
}
