package testutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobs is a BlobOpener of one blob, whose reads fail after failAt bytes
// when failAt is not negative.
type blobs struct {
	h      v1.Hash
	data   []byte
	failAt int
}

type nopSeeker struct{ io.Reader }

func (nopSeeker) Seek(int64, int) (int64, error) { return 0, errors.New("no seek") }
func (nopSeeker) Close() error                   { return nil }

func (b blobs) Open(_ context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	if h != b.h {
		return nil, errors.New("blob unknown")
	}
	if b.failAt >= 0 {
		return nopSeeker{io.MultiReader(bytes.NewReader(b.data[:b.failAt]), iotest.ErrReader(errors.New("disk on fire")))}, nil
	}
	return nopSeeker{bytes.NewReader(b.data)}, nil
}

// TestReadBlob: the bytes of a blob, or a failure that says why.
func TestReadBlob(t *testing.T) {
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	s := blobs{h: h, data: []byte("the blob"), failAt: -1}
	var got []byte
	if r := run(t, func(tb testing.TB) { got = ReadBlob(tb, s, h) }); r.fatal != "" || string(got) != "the blob" {
		t.Errorf("ReadBlob = %q, failure %q", got, r.fatal)
	}
	if r := run(t, func(tb testing.TB) { ReadBlob(tb, s, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}) }); !strings.Contains(r.fatal, "blob unknown") {
		t.Errorf("ReadBlob of a missing blob: failure %q", r.fatal)
	}
	s.failAt = 3
	if r := run(t, func(tb testing.TB) { ReadBlob(tb, s, h) }); !strings.Contains(r.fatal, "disk on fire") {
		t.Errorf("ReadBlob of a blob that fails to read: failure %q", r.fatal)
	}
}
