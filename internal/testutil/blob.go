package testutil

import (
	"context"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BlobOpener is what [ReadBlob] reads from: a layers.BlobStore (testutil
// imports no package of the module, so it names only the method it uses).
type BlobOpener interface {
	Open(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, error)
}

// ReadBlob returns the bytes of the blob h of s, and fails the test if it
// cannot open or read them.
func ReadBlob(t testing.TB, s BlobOpener, h v1.Hash) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
