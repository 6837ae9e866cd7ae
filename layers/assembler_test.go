package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
)

// testChunk is a small chunk size so that the test store paths span several
// members.
const testChunk = 64 << 10

func TestLayerContents(t *testing.T) {
	s := newFakeStore(t)
	a, store := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	paths := s.All()
	d, err := a.Layer(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	blob := readBlob(t, store, d.Digest)
	if int64(len(blob)) != d.Size {
		t.Errorf("blob has %d bytes, descriptor says %d", len(blob), d.Size)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(blob)); got != d.Digest.Hex {
		t.Errorf("blob sha256 %s, digest %s", got, d.Digest)
	}
	raw := testutil.Gunzip(t, blob)
	if got := fmt.Sprintf("%x", sha256.Sum256(raw)); got != d.DiffID.Hex {
		t.Errorf("tar sha256 %s, DiffID %s", got, d.DiffID)
	}
	// gzip and pigz read the concatenated members as one stream.
	for _, tool := range []string{"gzip", "pigz"} {
		cmd := exec.Command(tool, "-dc")
		cmd.Stdin = bytes.NewReader(blob)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s -dc: %v", tool, err)
		}
		if !bytes.Equal(out, raw) {
			t.Errorf("%s -dc gives %d bytes that differ from Go's %d", tool, len(out), len(raw))
		}
	}
	entries := testutil.ReadTar(t, bytes.NewReader(raw))
	got := describeTar(t, entries)
	want := expectEntries(t, s.Root, paths)
	diffLines(t, "layer entries", got, want)
	// Spot checks that do not depend on expectEntries.
	tree := s.Path("tree-1.0")[1:]
	order := []string{"nix/", "nix/store/", tree + "/", tree + "/a/", tree + "/a/x", tree + "/a-b", tree + "/bin/"}
	var names []string
	for _, e := range entries {
		names = append(names, e.Header.Name)
	}
	for i := 1; i < len(order); i++ {
		if slices.Index(names, order[i-1]) >= slices.Index(names, order[i]) || slices.Index(names, order[i]) < 0 {
			t.Errorf("%s should come right before %s in %q", order[i-1], order[i], names)
		}
	}
	byName := map[string]testutil.TarEntry{}
	for _, e := range entries {
		byName[e.Header.Name] = e
	}
	if e := byName[tree+"/lib/hardlink.txt"]; e.Header == nil || e.Header.Typeflag != '0' || len(e.Body) != 35000 {
		t.Errorf("hard link not written as a regular file with its contents: %+v", e.Header)
	}
	if e := byName[tree+"/bin/tool"]; e.Header == nil || e.Header.Mode != 0o555 {
		t.Errorf("executable: %+v", e.Header)
	}
	if e := byName[tree+"/lib/data.txt"]; e.Header == nil || e.Header.Mode != 0o444 {
		t.Errorf("0644 file: %+v", e.Header)
	}
	if e := byName[s.Path("link-3.0")[1:]]; e.Header == nil || e.Header.Linkname != s.Path("tree-1.0") {
		t.Errorf("symlink store path: %+v", e.Header)
	}
}

func TestLayerDeterministic(t *testing.T) {
	s := newFakeStore(t)
	paths := s.All()
	reversed := slices.Clone(paths)
	slices.Reverse(reversed)
	a1, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk, Workers: 1})
	a2, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk, Workers: 5})
	d1, err := a1.Layer(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := a2.Layer(context.Background(), append(reversed, paths[0])) // order and duplicates do not matter
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("two fresh caches gave %+v and %+v", d1, d2)
	}
	a3, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk, Level: 1})
	d3, err := a3.Layer(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if d3.Digest == d1.Digest || d3.DiffID != d1.DiffID {
		t.Errorf("level 1 should change the digest but not the DiffID: %+v vs %+v", d3, d1)
	}
}

func TestColdWarm(t *testing.T) {
	s := newFakeStore(t)
	ctx := context.Background()
	tree, big, file, link := s.Path("tree-1.0"), s.Path("big-4.0"), s.Path("file-2.0"), s.Path("link-3.0")

	cold, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	want, err := cold.Layer(ctx, []string{tree, big, file, link})
	if err != nil {
		t.Fatal(err)
	}
	coldChunks := cold.compressed.Load()

	a, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	if _, err := a.Layer(ctx, []string{big, file}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Layer(ctx, []string{tree}); err != nil {
		t.Fatal(err)
	}
	before := a.compressed.Load()
	if before >= coldChunks {
		t.Fatalf("the parts compressed %d chunks, the whole %d: link-3.0 should be left", before, coldChunks)
	}
	got, err := a.Layer(ctx, []string{link, tree, file, big}) // a new combination
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("warm layer %+v, cold %+v", got, want)
	}
	if n := a.compressed.Load() - before; n != 1 {
		t.Errorf("the warm layer compressed %d chunks, want 1 (link-3.0)", n)
	}
	// A layer cache hit compresses nothing, and a new Assembler on the
	// same directories (a restart) finds it.
	before = a.compressed.Load()
	if d, err := a.Layer(ctx, []string{big, link, file, tree}); err != nil || d != want {
		t.Errorf("cached layer: %+v, %v", d, err)
	}
	if n := a.compressed.Load(); n != before {
		t.Errorf("a cached layer compressed %d chunks", n-before)
	}
	restarted, err := NewAssembler(a.store, filepath.Dir(a.layerDir), Options{ChunkSize: testChunk, Root: s.Root})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := restarted.Layer(ctx, []string{tree, big, file, link}); err != nil || d != want {
		t.Errorf("after restart: %+v, %v", d, err)
	}
	if _, err := restarted.Layer(ctx, []string{tree, file}); err != nil {
		t.Fatal(err)
	}
	if n := restarted.compressed.Load(); n != 0 {
		t.Errorf("after a restart, cached paths were compressed again (%d chunks)", n)
	}
}

func TestDamagedCacheEntries(t *testing.T) {
	s := newFakeStore(t)
	ctx := context.Background()
	paths := []string{s.Path("tree-1.0"), s.Path("big-4.0")}
	ref, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	want, err := ref.Layer(ctx, paths)
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string]func(t *testing.T, name string){
		"flipped byte": func(t *testing.T, name string) {
			b, _ := os.ReadFile(name)
			b[len(b)/2] ^= 0x40
			os.WriteFile(name, b, 0o644)
		},
		"truncated": func(t *testing.T, name string) { os.Truncate(name, 1000) },
		"empty":     func(t *testing.T, name string) { os.Truncate(name, 0) },
		"wrong tar size": func(t *testing.T, name string) {
			b, _ := os.ReadFile(name)
			b[14] += 2 // tarSize + 512: still a whole number of blocks
			os.WriteFile(name, b, 0o644)
		},
	}
	for what, f := range damage {
		t.Run("member/"+what, func(t *testing.T) {
			a, store := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
			if _, err := a.Layer(ctx, paths[1:2]); err != nil {
				t.Fatal(err)
			}
			f(t, a.memberName(paths[1]))
			d, err := a.Layer(ctx, paths)
			if err != nil {
				t.Fatal(err)
			}
			if d != want {
				t.Errorf("layer from a damaged member cache: %+v, want %+v", d, want)
			}
			if fmt.Sprintf("%x", sha256.Sum256(testutil.Gunzip(t, readBlob(t, store, d.Digest)))) != want.DiffID.Hex {
				t.Error("blob does not decompress to the DiffID")
			}
		})
	}
	t.Run("layer entry", func(t *testing.T) {
		a, store := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
		if _, err := a.Layer(ctx, paths); err != nil {
			t.Fatal(err)
		}
		entries, _ := filepath.Glob(filepath.Join(a.layerDir, "*.json"))
		if len(entries) != 1 {
			t.Fatalf("layer entries: %q", entries)
		}
		for _, bad := range []string{`{"format":`, `{}`, strings.Replace(mustRead(t, entries[0]), want.Digest.Hex[:8], "00000000", 1)} {
			os.WriteFile(entries[0], []byte(bad), 0o644)
			if d, err := a.Layer(ctx, paths); err != nil || d != want {
				t.Errorf("after writing %q: %+v, %v", bad, d, err)
			}
		}
		// A missing blob is rebuilt.
		os.Chmod(filepath.Join(store.Dir(), "blobs", "sha256"), 0o755)
		if err := os.Remove(filepath.Join(store.Dir(), "blobs", "sha256", want.Digest.Hex)); err != nil {
			t.Fatal(err)
		}
		if d, err := a.Layer(ctx, paths); err != nil || d != want {
			t.Errorf("after removing the blob: %+v, %v", d, err)
		}
		if _, err := store.Stat(ctx, want.Digest); err != nil {
			t.Error(err)
		}
	})
}

func mustRead(t *testing.T, name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConcurrentBuildsOnce(t *testing.T) {
	s := newFakeStore(t)
	ctx := context.Background()
	tree, big, file, link := s.Path("tree-1.0"), s.Path("big-4.0"), s.Path("file-2.0"), s.Path("link-3.0")
	chunks := map[string]int64{}
	for _, p := range s.All() {
		a, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
		if _, err := a.Layer(ctx, []string{p}); err != nil {
			t.Fatal(err)
		}
		chunks[p] = a.compressed.Load()
	}

	a, _ := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	var wg sync.WaitGroup
	results := make([]Descriptor, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var set []string
			switch i % 4 {
			case 0:
				set = []string{tree, big}
			case 1:
				set = []string{big, tree}
			case 2:
				set = []string{big, file} // shares big with the others
			case 3:
				_, errs[i] = a.Layer(ctx, []string{big})
				return
			}
			results[i], errs[i] = a.Layer(ctx, set)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 8; i += 4 {
		if results[i] != results[i+1] || results[i] != results[(i+4)%8] {
			t.Errorf("same layer, different descriptors: %+v", results)
		}
	}
	if got, want := a.compressed.Load(), chunks[tree]+chunks[big]+chunks[file]; got != want {
		t.Errorf("compressed %d chunks, want %d: every path once", got, want)
	}
	_ = link
}

func TestLayerErrors(t *testing.T) {
	s := newFakeStore(t)
	a, store := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	ctx := context.Background()
	for _, paths := range [][]string{
		nil,
		{"/nix/store/../etc"},
		{"/etc/passwd"},
		{s.Path("tree-1.0") + "/bin"},
		{"/nix/store/" + strings.Repeat("e", 32) + "-x"}, // 'e' is not in Nix's base32
	} {
		if d, err := a.Layer(ctx, paths); err == nil {
			t.Errorf("Layer(%q) = %+v, want an error", paths, d)
		}
	}
	missing := testutil.StorePath("missing-1.0")
	if _, err := a.Layer(ctx, []string{s.Path("tree-1.0"), missing}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing store path: %v", err)
	}
	// Nothing was left behind: no blob, no layer entry, no temporary file.
	for _, dir := range []string{filepath.Join(store.Dir(), "blobs", "sha256"), filepath.Join(store.Dir(), "tmp"), a.layerDir, a.tmpDir} {
		if es, _ := os.ReadDir(dir); len(es) != 0 {
			t.Errorf("%s holds %d entries after failed builds", dir, len(es))
		}
	}
	if _, err := NewAssembler(store, t.TempDir(), Options{Level: 12}); err == nil {
		t.Error("level 12 accepted")
	}
	if _, err := NewAssembler(store, t.TempDir(), Options{ChunkSize: 1000}); err == nil {
		t.Error("chunk size 1000 accepted")
	}
}

// diffLines reports the first differences between two lists of lines.
func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s: got %d lines, want %d", what, len(got), len(want))
	for i, n := 0, 0; i < max(len(got), len(want)) && n < 5; i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("line %d:\n got %q\nwant %q", i, g, w)
			n++
		}
	}
}
