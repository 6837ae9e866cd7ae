package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// Gunzip decompresses a gzip stream, every member of it, with the
// standard library's reader (not the compressor the layers are written
// with), and fails the test on any error.
func Gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A TarEntry is one entry of a tar stream, with its contents.
type TarEntry struct {
	Header *tar.Header
	Body   []byte
}

// ReadTar reads every entry of an uncompressed tar stream, failing the test
// on any error (a truncated stream included).
func ReadTar(t testing.TB, r io.Reader) []TarEntry {
	t.Helper()
	tr := tar.NewReader(r)
	var out []TarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, TarEntry{h, body})
	}
}

// ReadLayer reads the entries of a gzip-compressed tar layer blob.
func ReadLayer(t testing.TB, blob []byte) []TarEntry {
	t.Helper()
	return ReadTar(t, bytes.NewReader(Gunzip(t, blob)))
}
