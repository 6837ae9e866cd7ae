package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

func digest(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// TestSpool: a blob of up to one part stays in memory, a larger one goes
// to an unlinked file; the tee sees every byte; a wrong digest and a
// finished spool are refused.
func TestSpool(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for _, part := range []int{len(data), len(data) - 1, 1000} {
		var tee bytes.Buffer
		s := NewSpool("test", dir, part, &tee)
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 777)
			if n, err := s.Write(rest[:k]); n != k || err != nil {
				t.Fatalf("part %d: write %d, %v", part, n, err)
			}
			rest = rest[k:]
		}
		if s.Digest() != digest(data) || s.Size() != int64(len(data)) || !bytes.Equal(tee.Bytes(), data) {
			t.Errorf("part %d: digest %s, size %d, tee %d bytes", part, s.Digest(), s.Size(), tee.Len())
		}
		if _, _, err := s.Finish(digest([]byte("other"))); !errors.Is(err, layers.ErrDigestMismatch) {
			t.Errorf("part %d: wrong digest: %v", part, err)
		}
		buf, f, err := s.Finish(digest(data))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case part >= len(data):
			if f != nil || !bytes.Equal(buf, data) {
				t.Errorf("part %d: in memory expected, got file %v, %d bytes", part, f, len(buf))
			}
		default:
			if f == nil || buf != nil {
				t.Fatalf("part %d: file expected", part)
			}
			got := make([]byte, len(data))
			if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
				t.Errorf("part %d: spool file: %v", part, err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("part %d: spool file not unlinked: %v", part, ents)
			}
		}
		s.Close()
		s.Close()
		if !s.Done() {
			t.Error("not done after Close")
		}
		if _, err := s.Write([]byte("x")); err == nil {
			t.Error("write after Close accepted")
		}
		if _, _, err := s.Finish(digest(data)); err == nil {
			t.Error("Finish after Close accepted")
		}
	}
	// A spool directory that is not there: the write that spills fails,
	// and so does Finish.
	s := NewSpool("test", filepath.Join(dir, "missing"), 10, nil)
	if _, err := s.Write(data); err == nil || !strings.Contains(err.Error(), "spool") {
		t.Errorf("spill into a missing directory: %v", err)
	}
	if _, _, err := s.Finish(digest(data)); err == nil {
		t.Error("Finish after a failed write accepted")
	}
}

// TestReader: reads open at the offset, a Seek reopens, a body cut short
// is an error, Stat and Version describe the object.
func TestReader(t *testing.T) {
	data := []byte(strings.Repeat("nixery", 1000))
	var opens []int64
	cut := false
	r := &Reader{
		Ctx: context.Background(), Pkg: "test", Key: "k", Name: "n", Size: int64(len(data)), Ver: "v1",
		Open: func(_ context.Context, off int64) (io.ReadCloser, error) {
			opens = append(opens, off)
			b := data[off:]
			if cut {
				b = b[:len(b)/2]
			}
			return io.NopCloser(bytes.NewReader(b)), nil
		},
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if _, err := r.Seek(-6, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "nixery" {
		t.Errorf("after Seek: %q, %v", got, err)
	}
	if len(opens) != 2 || opens[1] != int64(len(data)-6) {
		t.Errorf("opens at %v", opens)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("seek before the start accepted")
	}
	cut = true
	r.Seek(0, io.SeekStart)
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a body cut short: %v", err)
	}
	fi, _ := r.Stat()
	if fi.Name() != "n" || fi.Size() != int64(len(data)) || !fi.Mode().IsRegular() || r.Version() != "v1" {
		t.Errorf("stat %v %v %v, version %q", fi.Name(), fi.Size(), fi.Mode(), r.Version())
	}
	r.Close()
}

func TestCheckStateName(t *testing.T) {
	for _, n := range []string{"gc/lease", "inflight/host-1a2b-3", "times/a.b_c-d", strings.Repeat("a", 512)} {
		if err := CheckStateName("test", n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", "../x", "a//b", "a b", "gc/./x", "/x", "x/", "é", strings.Repeat("a", 513)} {
		if err := CheckStateName("test", n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

// TestLayout: keys under the prefix, and listed keys parsed back only
// when they are of their kind.
func TestLayout(t *testing.T) {
	l := Layout{Pkg: "test", Prefix: "p/"}
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	if got := l.Blob(h); got != "p/blobs/sha256/"+h.Hex {
		t.Errorf("Blob = %q", got)
	}
	if got, ok := l.BlobOf(l.Blob(h)); !ok || got != h {
		t.Errorf("BlobOf(Blob) = %v, %v", got, ok)
	}
	if _, ok := l.BlobOf("p/blobs/sha256/" + h.Hex + ".tmp"); ok {
		t.Error("BlobOf takes a stray object for a blob")
	}
	if q := l.Quarantine(h); !strings.HasPrefix(q, "p/quarantine/"+h.Hex+".") {
		t.Errorf("Quarantine = %q", q)
	}
	k, err := l.Record(h.Hex)
	if err != nil || k != "p/index/"+h.Hex+".json" {
		t.Errorf("Record = %q, %v", k, err)
	}
	if got, ok := l.RecordOf(k); !ok || got != h.Hex {
		t.Errorf("RecordOf(Record) = %q, %v", got, ok)
	}
	if _, err := l.Record("../x"); err == nil || !strings.Contains(err.Error(), "test: bad record key") {
		t.Errorf("Record(../x): %v", err)
	}
	if _, ok := l.RecordOf("p/index/" + h.Hex); ok {
		t.Error("RecordOf takes a key without .json for a record")
	}
	k, err = l.State("gc/lease")
	if err != nil || k != "p/state/gc/lease" {
		t.Errorf("State = %q, %v", k, err)
	}
	if got, ok := l.StateOf(k); !ok || got != "gc/lease" {
		t.Errorf("StateOf(State) = %q, %v", got, ok)
	}
	if _, err := l.State("../blobs/x"); err == nil {
		t.Error("State takes a name leaving state/")
	}
	if _, ok := l.StateOf("p/state/a//b"); ok {
		t.Error("StateOf takes a bad name")
	}
}
