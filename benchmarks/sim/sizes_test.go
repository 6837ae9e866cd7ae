package sim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixery-go/nixery/layers"
)

// TestMeasureSizes checks the premise of the simulation: sizes measured
// from one-path layers give the exact size of any layer the Assembler
// builds.
func TestMeasureSizes(t *testing.T) {
	root := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	var paths []string
	for i := range 6 {
		p := SyntheticStorePath(7, fmt.Sprintf("p%d-1.0", i))
		dir := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		// Half compressible text, half random bytes, of varied lengths
		// (some over a 64 KiB chunk).
		data := bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), 1000*(i+1))
		noise := make([]byte, 30000*i)
		for k := range noise {
			noise[k] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", "tool"), append(data, noise...), 0o755); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	newAsm := func() *layers.Assembler {
		store, err := layers.NewFSStore(filepath.Join(t.TempDir(), "store"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := layers.NewAssembler(store, t.TempDir(), layers.Options{Root: root, ChunkSize: 64 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ctx := context.Background()
	s, err := MeasureSizes(ctx, newAsm(), paths, 3)
	if err != nil {
		t.Fatal(err)
	}
	if s.Overhead <= 0 || len(s.Paths) != len(paths) {
		t.Fatalf("sizes %+v", s)
	}
	other := newAsm() // a fresh cache: nothing measured is reused
	for _, set := range [][]string{paths, paths[1:4], {paths[5], paths[0]}, paths[2:3]} {
		d, err := other.Layer(ctx, set)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.LayerSize(set); got != d.Size {
			t.Errorf("layer of %d paths: predicted %d bytes, built %d", len(set), got, d.Size)
		}
	}
	if _, err := MeasureSizes(ctx, newAsm(), paths[:1], 1); err == nil {
		t.Error("MeasureSizes of one path succeeded")
	}
	if _, err := MeasureSizes(ctx, newAsm(), []string{paths[0], SyntheticStorePath(7, "missing-1.0")}, 1); err == nil {
		t.Error("MeasureSizes of a missing store path succeeded")
	}
}
