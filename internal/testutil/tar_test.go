package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"testing"
)

func TestReadLayer(t *testing.T) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range []struct{ name, body string }{{"a", "first"}, {"dir/b", ""}, {"c", "third"}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o444, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	// Two gzip members, as a layer compressed in chunks has.
	var blob bytes.Buffer
	half := raw.Len() / 2
	for _, part := range [][]byte{raw.Bytes()[:half], raw.Bytes()[half:]} {
		zw := gzip.NewWriter(&blob)
		zw.Write(part)
		zw.Close()
	}
	if got := Gunzip(t, blob.Bytes()); !bytes.Equal(got, raw.Bytes()) {
		t.Fatalf("Gunzip gave %d bytes, want the %d of both members", len(got), raw.Len())
	}
	entries := ReadLayer(t, blob.Bytes())
	if len(entries) != 3 || entries[0].Header.Name != "a" || string(entries[0].Body) != "first" ||
		entries[1].Header.Name != "dir/b" || len(entries[1].Body) != 0 || string(entries[2].Body) != "third" {
		t.Errorf("entries: %+v", entries)
	}
}

func TestReadTarFailures(t *testing.T) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	tw.WriteHeader(&tar.Header{Name: "a", Mode: 0o444, Size: 1000, Typeflag: tar.TypeReg})
	tw.Write(make([]byte, 1000))
	tw.Close()
	if r := run(t, func(tb testing.TB) { ReadTar(tb, bytes.NewReader(raw.Bytes()[:700])) }); r.fatal == "" {
		t.Error("ReadTar accepted a truncated tar stream")
	}
	if r := run(t, func(tb testing.TB) { Gunzip(tb, []byte("not gzip")) }); r.fatal == "" {
		t.Error("Gunzip accepted bytes that are not gzip")
	}
}
