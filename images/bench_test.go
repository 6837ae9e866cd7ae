package images

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/registry"
)

// storeImages serves blobs straight from a store, unverified: what Blob
// did before verification, the baseline of BenchmarkBlobGET.
type storeImages struct {
	registry.Images
	store layers.BlobStore
}

func (s storeImages) Blob(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error) {
	n, err := s.store.Stat(ctx, h)
	if err != nil {
		return nil, 0, err
	}
	rc, err := s.store.Open(ctx, h)
	return rc, n, err
}

// BenchmarkBlobGET measures a GET of a 16 MiB blob over loopback HTTP:
// "store" serves the store's file unverified, "verified" through
// Builder.Blob once the blob was verified (an fstat and a map lookup more;
// still sendfile), "first" the first GET after the file changed (a sha256
// pass before the bytes go out).
func BenchmarkBlobGET(b *testing.B) {
	f := newFixture(b, nil, nil, "")
	data := make([]byte, 16<<20)
	rand.Read(data)
	h, err := layers.Put(b.Context(), f.store, data)
	if err != nil {
		b.Fatal(err)
	}
	quiet := registry.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, c := range []struct {
		name   string
		images registry.Images
		forget bool
	}{
		{"store", storeImages{f.b, f.store}, false},
		{"verified", f.b, false},
		{"first", f.b, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			reg := registry.New(c.images, quiet)
			defer reg.Close()
			srv := httptest.NewServer(reg)
			defer srv.Close()
			url := srv.URL + "/v2/x/blobs/" + h.String()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if c.forget {
					f.b.verifier.Forget(h)
				}
				resp, err := srv.Client().Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(len(data)) {
					b.Fatalf("%d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}
