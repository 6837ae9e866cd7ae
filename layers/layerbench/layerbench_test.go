package layerbench

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixery-go/nixery/layers"
)

// TestMeasurements runs every measurement once on a small closure and checks
// that they consumed the same tar bytes and produced output that is smaller
// than their input.
func TestMeasurements(t *testing.T) {
	c, err := FakeClosure(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if c.Bytes < 8<<20 || c.Bytes > 9<<20 || len(c.Paths) < 2 {
		t.Errorf("closure of %d bytes in %d paths", c.Bytes, len(c.Paths))
	}
	again, err := FakeClosure(8 << 20)
	if err != nil || again.Root != c.Root {
		t.Errorf("second FakeClosure: %v, %v; want the same root %s", again, err, c.Root)
	}
	for _, p := range c.Paths {
		if _, err := os.Lstat(filepath.Join(c.Root, p)); err != nil {
			t.Error(err)
		}
	}
	ctx := context.Background()
	h := sha256.New()
	tarSize, err := layers.WriteTar(ctx, h, c.Root, c.Paths)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, r Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r.In != tarSize || r.Out <= 0 || r.Out >= r.In || r.Duration <= 0 {
			t.Errorf("%s: %v; the tar has %d bytes", what, r, tarSize)
		}
	}
	cold, err := Cold(ctx, c, t.TempDir(), layers.Options{})
	check("cold", cold, err)
	w, err := NewWarm(ctx, c, t.TempDir(), layers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 2 {
		r, err := w.Run(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if i := i % len(c.Paths); r.In != tarSize-w.Stats[i].TarSize {
			t.Errorf("warm run %d: %d tar bytes, want %d", i, r.In, tarSize-w.Stats[i].TarSize)
		}
	}
	r, err := Bare(ctx, c, layers.DefaultLevel)
	check("bare", r, err)
	if d := r.Out - cold.Out; d < -cold.Out/20 || d > cold.Out/20 {
		t.Errorf("bare gzip gives %d bytes, the layer %d: more than 5%% apart", r.Out, cold.Out)
	}
	r, err = External(ctx, c, "gzip", "-6")
	check("gzip", r, err)
	r, err = StreamLayer(ctx, c, layers.DefaultLevel)
	check("stream.Layer", r, err)
}
