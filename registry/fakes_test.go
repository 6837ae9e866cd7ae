package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// memStore is an in-memory layers.BlobStore for unit tests.
type memStore struct {
	mu    sync.Mutex
	blobs map[v1.Hash][]byte
}

func newMemStore() *memStore { return &memStore{blobs: map[v1.Hash][]byte{}} }

func (s *memStore) Stat(_ context.Context, h v1.Hash) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[h]
	if !ok {
		return 0, fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	return int64(len(b)), nil
}

func (s *memStore) Open(_ context.Context, h v1.Hash) (io.ReadSeekCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[h]
	if !ok {
		return nil, fmt.Errorf("%w: %s", layers.ErrBlobUnknown, h)
	}
	return nopCloser{bytes.NewReader(b)}, nil
}

func (s *memStore) Create(context.Context) (layers.BlobWriter, error) {
	return &memWriter{s: s}, nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

type memWriter struct {
	s   *memStore
	buf bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *memWriter) Cancel() error               { return nil }
func (w *memWriter) Commit(h v1.Hash) error {
	sum := sha256.Sum256(w.buf.Bytes())
	if hex.EncodeToString(sum[:]) != h.Hex {
		return layers.ErrDigestMismatch
	}
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if _, ok := w.s.blobs[h]; !ok {
		w.s.blobs[h] = bytes.Clone(w.buf.Bytes())
	}
	return nil
}

func (s *memStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blobs)
}

// fakePkgs is a small package set: name -> dependencies. Store paths are
// /nix/store/<32 chars>-<name>.
var fakePkgs = map[string][]string{
	"glibc":           nil,
	"zlib":            {"glibc"},
	"openssl":         {"glibc"},
	"curl":            {"openssl", "zlib", "glibc"},
	"git":             {"openssl", "zlib", "curl", "glibc"},
	"bashInteractive": {"glibc"},
	"coreutils":       {"glibc"},
	"moreutils":       {"glibc", "coreutils"},
	"nano":            {"glibc"},
	"cacert":          nil,
	"iana-etc":        nil,
	"hello":           {"glibc"},
}

func storePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	h := make([]byte, 32)
	for i := range h {
		h[i] = alphabet[int(sum[i])%32]
	}
	return "/nix/store/" + string(h) + "-" + name
}

// fakeStoreFS gives each package a bin/<name> file, plus the files the
// customisation layer cares about.
func fakeStoreFS() fstest.MapFS {
	fsys := fstest.MapFS{}
	for name := range fakePkgs {
		p := strings.TrimPrefix(storePath(name), "/")
		fsys[p+"/bin/"+name] = &fstest.MapFile{Data: []byte("#!" + name), Mode: 0o555}
		fsys[p+"/share/doc/"+name+"/README"] = &fstest.MapFile{Data: []byte(name)}
	}
	cu := strings.TrimPrefix(storePath("coreutils"), "/")
	fsys[cu+"/bin/env"] = &fstest.MapFile{Data: []byte("env"), Mode: 0o555}
	fsys[cu+"/bin/ls"] = &fstest.MapFile{Data: []byte("ls"), Mode: 0o555}
	mu := strings.TrimPrefix(storePath("moreutils"), "/")
	fsys[mu+"/bin/ls"] = &fstest.MapFile{Data: []byte("not ls"), Mode: 0o555} // conflict: coreutils wins
	fsys[mu+"/bin/sponge"] = &fstest.MapFile{Data: []byte("sponge"), Mode: 0o555}
	ca := strings.TrimPrefix(storePath("cacert"), "/")
	fsys[ca+"/etc/ssl/certs/ca-bundle.crt"] = &fstest.MapFile{Data: []byte("certs")}
	ia := strings.TrimPrefix(storePath("iana-etc"), "/")
	fsys[ia+"/etc/services"] = &fstest.MapFile{Data: []byte("services")}
	fsys[ia+"/etc/protocols"] = &fstest.MapFile{Data: []byte("protocols")}
	return fsys
}

// fakeRealiser resolves names case-insensitively against fakePkgs, like
// package nix, and counts its runs.
type fakeRealiser struct {
	runs  atomic.Int64
	delay time.Duration
	err   error // returned instead of a result, when set
	block chan struct{}
}

func (f *fakeRealiser) Realise(ctx context.Context, req Request) (*Realised, error) {
	f.runs.Add(1)
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.err != nil {
		return nil, f.err
	}
	if req.System != SystemAMD64 {
		return nil, &nix.UnsupportedSystemError{System: req.System, Reason: "the fake set only has x86_64-linux"}
	}
	var unknown []string
	var pkgs []Package
	for _, n := range req.Packages {
		attr := ""
		for k := range fakePkgs {
			if strings.EqualFold(k, n) {
				attr = k
			}
		}
		if attr == "" {
			unknown = append(unknown, n)
			continue
		}
		pkgs = append(pkgs, Package{Name: n, Attr: attr, Path: storePath(attr)})
	}
	if unknown != nil {
		sort.Strings(unknown)
		return nil, &nix.UnknownPackagesError{Names: unknown}
	}
	seen := map[string]bool{}
	var paths []closure.Path
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		p := closure.Path{Path: storePath(n), NarSize: int64(1000 * len(n))}
		for _, d := range fakePkgs[n] {
			p.References = append(p.References, storePath(d))
			visit(d)
		}
		paths = append(paths, p)
	}
	var roots []string
	for _, p := range pkgs {
		visit(p.Attr)
		roots = append(roots, p.Path)
	}
	g, err := closure.New(paths, roots)
	if err != nil {
		return nil, err
	}
	return &Realised{Graph: g, Packages: pkgs}, nil
}

// fakeLayers builds a real gzip tar layer per group (a directory and a file
// per store path) and counts builds per group.
type fakeLayers struct {
	store  layers.BlobStore
	mu     sync.Mutex
	builds map[string]int
}

func (f *fakeLayers) Layer(ctx context.Context, paths []string) (layers.Descriptor, error) {
	f.mu.Lock()
	if f.builds == nil {
		f.builds = map[string]int{}
	}
	f.builds[strings.Join(paths, ":")]++
	f.mu.Unlock()
	return layers.WriteTarLayer(ctx, f.store, 0, func(tw *tar.Writer) error {
		for _, p := range paths {
			rel := strings.TrimPrefix(p, "/")
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: Created}); err != nil {
				return err
			}
			data := []byte(p)
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/content", Typeflag: tar.TypeReg, Mode: 0o444, Size: int64(len(data)), ModTime: Created}); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
}

func (f *fakeLayers) maxBuilds() (max, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.builds {
		total += n
		if n > max {
			max = n
		}
	}
	return max, total
}

// groupEach puts each store path in a layer of its own, most referenced
// first (ties by path), merging the rest into the last layer over budget.
func groupEach(g *closure.Graph, _ closure.Popularity, budget int) [][]string {
	paths := g.Paths()
	idx := make([]int, len(paths))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ua, ub := len(g.Users(idx[a])), len(g.Users(idx[b]))
		if ua != ub {
			return ua > ub
		}
		return paths[idx[a]].Path < paths[idx[b]].Path
	})
	var out [][]string
	for _, i := range idx {
		if len(out) < budget {
			out = append(out, []string{paths[i].Path})
		} else {
			out[budget-1] = append(out[budget-1], paths[i].Path)
		}
	}
	for _, grp := range out {
		sort.Strings(grp)
	}
	return out
}

// fakeSource is pinned unless told otherwise and knows only "latest", plus
// 40-hex commits when git is set.
type fakeSource struct {
	unpinned bool
	git      bool
}

func (s fakeSource) CacheKey(tag string) (string, bool, error) {
	if tag == "latest" {
		return "fake-set", !s.unpinned, nil
	}
	if s.git && len(tag) == 40 {
		return "fake-git-" + tag, true, nil
	}
	return "", false, fmt.Errorf("tag %q: the fake source only has latest", tag)
}

type fixture struct {
	reg   *Registry
	real  *fakeRealiser
	lay   *fakeLayers
	store *memStore
	logs  *syncBuffer
	dir   string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t testing.TB, src Source, store *memStore, dir string) *fixture {
	t.Helper()
	if store == nil {
		store = newMemStore()
	}
	f := &fixture{real: &fakeRealiser{}, store: store, logs: &syncBuffer{}, dir: dir}
	f.lay = &fakeLayers{store: store}
	reg, err := New(Config{
		Realiser:  f.real,
		Source:    src,
		Store:     store,
		Layers:    f.lay,
		Group:     groupEach,
		StateDir:  dir,
		StoreFS:   fakeStoreFS(),
		MaxLayers: 6,
		Logger:    newTestLogger(f.logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	f.reg = reg
	return f
}
