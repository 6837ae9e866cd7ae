package s3store_test

import (
	"crypto/sha256"
	"os"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/s3store"
)

// vmHWM is the process's peak RSS so far, in bytes.
func vmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n << 10
		}
	}
	return 0
}

// writeBlob streams size bytes (incompressible-looking, from a 1 MiB
// pattern) into s and commits them, as the assembler writes a layer.
func writeBlob(b *testing.B, s layers.BlobStore, size int64, salt byte) {
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte(i*7919>>3) ^ salt
	}
	w, err := s.Create(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.New()
	for n := int64(0); n < size; n += int64(len(chunk)) {
		c := chunk[:min(int64(len(chunk)), size-n)]
		chunk[0]++
		sum.Write(c)
		if _, err := w.Write(c); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(digestOf(sum.Sum(nil))); err != nil {
		b.Fatal(err)
	}
}

func digestOf(sum []byte) v1.Hash {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 2*len(sum))
	for i, c := range sum {
		out[2*i], out[2*i+1] = hexdigits[c>>4], hexdigits[c&15]
	}
	return v1.Hash{Algorithm: "sha256", Hex: string(out)}
}

// BenchmarkStoreWrite writes 256 MB blobs to the filesystem store and to
// the S3 store on a local SeaweedFS, side by side (MB/s each).
func BenchmarkStoreWrite(b *testing.B) {
	w := testutil.StartSeaweedFS(b)
	w.SetEnv(b)
	const size = 256 << 20
	fss, err := layers.NewFSStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s3s, err := s3store.New(b.Context(), s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: "bench/"})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		s    layers.BlobStore
	}{{"filesystem", fss}, {"s3", s3s}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; b.Loop(); i++ {
				writeBlob(b, c.s, size, byte(i))
			}
		})
	}
}

// BenchmarkS3Upload2GB uploads one 2 GiB blob and reports the process's
// peak RSS (run it alone: the peak is the process's).
func BenchmarkS3Upload2GB(b *testing.B) {
	w := testutil.StartSeaweedFS(b)
	w.SetEnv(b)
	s, err := s3store.New(b.Context(), s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region, Prefix: "big/"})
	if err != nil {
		b.Fatal(err)
	}
	const size = 2 << 30
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		writeBlob(b, s, size, byte(i))
	}
	b.ReportMetric(float64(vmHWM())/(1<<20), "peak-RSS-MiB")
}
