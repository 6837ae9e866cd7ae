package speed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"testing/fstest"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(rssChildEnv); spec != "" {
		os.Exit(rssChild(spec)) // child process of BenchmarkPeakRSS
	}
	if n := os.Getenv("SPEED_TEST_ALLOC_MIB"); n != "" {
		// Child process of TestRunUsage: touch n MiB and exit.
		var mib int
		fmt.Sscan(n, &mib)
		b := make([]byte, mib<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		os.Exit(int(b[len(b)-4096]) - 1)
	}
	os.Exit(m.Run())
}

// fakeStore writes n store paths of about size bytes each: half text
// (compressible), half random.
func fakeStore(t *testing.T, n, size int) (root string, paths []closure.Path) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	s := testutil.NewStoreTree(t)
	for i := 0; i < n; i++ {
		text := bytes.Repeat([]byte(fmt.Sprintf("line %d of package %d\n", i, i)), size/2/24)
		random := make([]byte, size/2)
		for j := range random {
			random[j] = byte(rng.Uint32())
		}
		p := s.Add(t, fmt.Sprintf("pkg%d-1.0", i), fstest.MapFS{
			"share.txt": {Data: text, Mode: 0o644},
			"bin/prog":  {Data: random, Mode: 0o755},
			"link":      {Data: []byte("bin/prog"), Mode: fs.ModeSymlink},
		})
		paths = append(paths, closure.Path{Path: p, NarSize: int64(len(text) + len(random) + 1000)})
	}
	return s.Root, paths
}

func TestAssembly(t *testing.T) {
	testutil.RequireTools(t, "tar", "gzip", "pigz")
	root, paths := fakeStore(t, 12, 1<<20)
	var lopts = AssemblyOptions{Paths: paths, Layers: 4, TmpDir: t.TempDir(), Baselines: true}
	lopts.Layer.Root = root
	res, err := Assembly(context.Background(), lopts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Paths != 12 || res.Layers != 4 {
		t.Errorf("Paths, Layers = %d, %d", res.Paths, res.Layers)
	}
	var input int64
	for _, p := range paths {
		input += p.NarSize
	}
	for _, th := range []Throughput{res.Cold, res.Warm, res.Cached, res.Bare, res.TarGzip, res.TarPigz} {
		if th.InputBytes != input || th.Duration <= 0 || th.BytesPerSec() <= 0 {
			t.Errorf("%s: %+v", th.Name, th)
		}
		// Half of every path is random, half text: the output is
		// a bit over half the input.
		if r := th.Ratio(); r < 0.45 || r > 0.6 {
			t.Errorf("%s: compression ratio %.3f, want about 0.5", th.Name, r)
		}
	}
	// Layers hold one gzip header and trailer member each, and every
	// path's members once: regrouping into as many layers gives the same
	// total size, and the cached run finds the cold run's blobs.
	if res.Warm.OutputBytes != res.Cold.OutputBytes || res.Cached.OutputBytes != res.Cold.OutputBytes {
		t.Errorf("cold %d, warm %d, cached %d bytes", res.Cold.OutputBytes, res.Warm.OutputBytes, res.Cached.OutputBytes)
	}
	if _, err := Assembly(context.Background(), AssemblyOptions{}); err == nil {
		t.Error("Assembly without paths succeeded")
	}
	// Fewer paths than twice the layers: two paths per layer, and the warm
	// run still builds new combinations.
	lopts.Paths, lopts.Layers, lopts.Baselines = paths[:5], 10, false
	if res, err = Assembly(context.Background(), lopts); err != nil {
		t.Fatal(err)
	}
	if res.Layers != 2 || res.Bare.Duration != 0 || res.Warm.Duration < 10*res.Cached.Duration {
		t.Errorf("5 paths: %d layers; bare %v, warm %v, cached %v", res.Layers, res.Bare.Duration, res.Warm.Duration, res.Cached.Duration)
	}
}

func TestCompression(t *testing.T) {
	testutil.RequireTools(t, "tar")
	root, paths := fakeStore(t, 3, 1<<20)
	got, err := Compression(context.Background(), CompressionOptions{Paths: paths, Root: root, Levels: []int{1, 9}, ChunkSizes: []int{64 << 10}, TmpDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Level != 1 || got[1].Level != 9 || got[2].ChunkSize != 64<<10 || got[2].Level != layers.DefaultLevel {
		t.Fatalf("settings %+v", got)
	}
	for _, s := range got {
		if r := s.Ratio(); r < 0.45 || r > 0.6 || s.Duration <= 0 {
			t.Errorf("level %d, chunk %d: ratio %.3f in %v", s.Level, s.ChunkSize, r, s.Duration)
		}
	}
	// Level 9 is smaller than level 1 on the text half.
	if got[1].OutputBytes >= got[0].OutputBytes {
		t.Errorf("level 9 gives %d bytes, level 1 %d", got[1].OutputBytes, got[0].OutputBytes)
	}
	if _, err := Compression(context.Background(), CompressionOptions{}); err == nil {
		t.Error("Compression without paths succeeded")
	}
}

func TestSelectAndSamplePaths(t *testing.T) {
	var ps []closure.Path
	for i, size := range []int64{50, 10, 300, 20, 5} {
		ps = append(ps, closure.Path{Path: fmt.Sprintf("/nix/store/%032d-p%d", i, i), NarSize: size})
	}
	g, err := closure.New(ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(ps []closure.Path) (n int64) {
		for _, p := range ps {
			n += p.NarSize
		}
		return n
	}
	if got := SelectPaths(g, 100); len(got) != 3 || sum(got) != 360 {
		t.Errorf("SelectPaths(100) = %v: want the first paths up to at least 100 bytes", got)
	}
	if got := SamplePaths(g, 100); len(got) != 4 || sum(got) != 85 {
		t.Errorf("SamplePaths(100) = %v: want every path that fits in 100 bytes", got)
	}
}

func TestSplit(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	got := fmt.Sprint(split(names, 3, 0), split(names, 3, 1))
	if want := "[[a b] [c d] [e f g]] [[b c] [d e] [f g a]]"; got != want {
		t.Errorf("split = %s, want %s", got, want)
	}
}

func TestRunUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SPEED_TEST_ALLOC_MIB=200")
	u, err := Run(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if u.MaxRSS < 200<<20 || u.MaxRSS > 1<<30 {
		t.Errorf("MaxRSS = %d, want about 200 MiB", u.MaxRSS)
	}
	if u.Wall <= 0 || u.User+u.System <= 0 {
		t.Errorf("usage %+v", u)
	}
	if _, err := UsageOf(nil); !errors.Is(err, ErrNoUsage) {
		t.Errorf("UsageOf(nil) = %v", err)
	}
}
