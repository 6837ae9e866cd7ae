// Package fakenix fakes the two things package images asks for, Nix and
// a layer builder, over a small package set, so that tests of images and
// registry run without Nix. The fakes behave like the real ones where
// tests look: names resolve case-insensitively, unknown names are reported
// together, systems other than x86_64-linux are unsupported, and layers
// are real gzip tarballs in a real blob store.
//
// End-to-end tests run the real Nix; these are for unit tests next to them.
package fakenix

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// Packages is the fake package set: name -> dependencies.
var Packages = map[string][]string{
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

// StorePath returns the store path of a fake package,
// /nix/store/<32 chars>-<name> ([testutil.StorePath]).
func StorePath(name string) string { return testutil.StorePath(name) }

// StoreFS gives each package a bin/<name> file and a README, plus the files
// the customisation layer cares about: coreutils' env and ls (moreutils has
// a conflicting ls), cacert's bundle and iana-etc's services and protocols.
// Paths have no leading slash, as an fs.FS of "/" has them.
func StoreFS() fstest.MapFS {
	fsys := fstest.MapFS{}
	for name := range Packages {
		p := strings.TrimPrefix(StorePath(name), "/")
		fsys[p+"/bin/"+name] = &fstest.MapFile{Data: []byte("#!" + name), Mode: 0o555}
		fsys[p+"/share/doc/"+name+"/README"] = &fstest.MapFile{Data: []byte(name)}
	}
	cu := strings.TrimPrefix(StorePath("coreutils"), "/")
	fsys[cu+"/bin/env"] = &fstest.MapFile{Data: []byte("env"), Mode: 0o555}
	fsys[cu+"/bin/ls"] = &fstest.MapFile{Data: []byte("ls"), Mode: 0o555}
	mu := strings.TrimPrefix(StorePath("moreutils"), "/")
	fsys[mu+"/bin/ls"] = &fstest.MapFile{Data: []byte("not ls"), Mode: 0o555}
	fsys[mu+"/bin/sponge"] = &fstest.MapFile{Data: []byte("sponge"), Mode: 0o555}
	ca := strings.TrimPrefix(StorePath("cacert"), "/")
	fsys[ca+"/etc/ssl/certs/ca-bundle.crt"] = &fstest.MapFile{Data: []byte("certs")}
	ia := strings.TrimPrefix(StorePath("iana-etc"), "/")
	fsys[ia+"/etc/services"] = &fstest.MapFile{Data: []byte("services")}
	fsys[ia+"/etc/protocols"] = &fstest.MapFile{Data: []byte("protocols")}
	return fsys
}

var commit = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Nix is a fake of package images' Nix interface over [Packages]. Its
// fields may be changed between requests (not during one).
type Nix struct {
	// Runs counts the calls of Build.
	Runs atomic.Int64
	// Delay is slept in every Build.
	Delay time.Duration
	// Err, when set, is returned by Build instead of a result.
	Err error
	// Queue, when set, makes Build wait until it is closed or its context
	// ends before it "starts" (calls the request's Started), as a build
	// waiting for a slot of the real builder does.
	Queue chan struct{}
	// Block, when set, makes a started Build wait until it is closed or
	// its context ends.
	Block chan struct{}
	// Unpinned makes "latest" unpinned, as a local tree is.
	Unpinned bool
	// Git accepts 40-hex commit tags (pinned), as a git source does.
	Git bool
	// Pop is the popularity; nil is an empty map.
	Pop closure.Popularity
	// Systems are the systems it builds besides x86_64-linux (with the
	// same store paths: the fake has one set of files).
	Systems []string
	// SystemErr is the error of every build for a system, if any.
	SystemErr map[string]error
}

// Build resolves req's names case-insensitively against Packages and
// returns their closure.
func (f *Nix) Build(ctx context.Context, req nix.Request) (*nix.Result, error) {
	f.Runs.Add(1)
	if f.Queue != nil {
		select {
		case <-f.Queue:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	if req.Started != nil {
		req.Started()
	}
	if f.Block != nil {
		select {
		case <-f.Block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.Delay > 0 {
		time.Sleep(f.Delay)
	}
	if f.Err != nil {
		return nil, f.Err
	}
	if err := f.SystemErr[req.System]; err != nil {
		return nil, err
	}
	if req.System != "" && req.System != nix.DefaultSystem && !slices.Contains(f.Systems, req.System) {
		return nil, &nix.UnsupportedSystemError{System: req.System, Reason: "the fake set only has x86_64-linux"}
	}
	var unknown []string
	var pkgs []nix.Package
	for _, n := range req.Packages {
		attr := ""
		for k := range Packages {
			if k == n || attr == "" && strings.EqualFold(k, n) {
				attr = k
			}
		}
		if attr == "" {
			unknown = append(unknown, n)
			continue
		}
		pkgs = append(pkgs, nix.Package{Name: n, Attr: attr, Path: StorePath(attr)})
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
		p := closure.Path{Path: StorePath(n), NarSize: int64(1000 * len(n)), NarHash: NarHash(n)}
		for _, d := range Packages[n] {
			p.References = append(p.References, StorePath(d))
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
	return &nix.Result{Graph: g, Packages: pkgs}, nil
}

// CacheKey knows "latest" and, with Git, commits; other tags are unknown.
func (f *Nix) CacheKey(tag string) (string, bool, error) {
	switch {
	case tag == "latest" || tag == "":
		return "fake-set", !f.Unpinned, nil
	case f.Git && commit.MatchString(tag):
		return "fake-git-" + tag, true, nil
	}
	return "", false, fmt.Errorf("%w %q: the fake source has only the tag \"latest\"", nix.ErrUnknownTag, tag)
}

// Popularity returns Pop.
func (f *Nix) Popularity(context.Context) (*nix.Popularity, error) {
	pop := f.Pop
	if pop == nil {
		pop = closure.Popularity{}
	}
	return &nix.Popularity{Map: pop, Fingerprint: fmt.Sprintf("fake-%d", len(pop)), From: "fake"}, nil
}

// Layers is a fake of package images' LayerBuilder: each group becomes a
// real gzip tar layer in Store (a directory and a file per store path), and
// builds are counted per group.
type Layers struct {
	Store layers.BlobStore

	mu     sync.Mutex
	builds map[string]int
}

// Format names the fake format.
func (f *Layers) Format() string { return "fake-layers/v1" }

// Layer builds the layer of paths.
func (f *Layers) Layer(ctx context.Context, paths []string) (layers.Descriptor, error) {
	f.mu.Lock()
	if f.builds == nil {
		f.builds = map[string]int{}
	}
	f.builds[strings.Join(paths, ":")]++
	f.mu.Unlock()
	return layers.WriteTarLayer(ctx, f.Store, 0, func(tw *tar.Writer) error {
		for _, p := range paths {
			rel := strings.TrimPrefix(p, "/")
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/", Typeflag: tar.TypeDir, Mode: 0o555, ModTime: layers.Epoch}); err != nil {
				return err
			}
			data := []byte(p)
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/content", Typeflag: tar.TypeReg, Mode: 0o444, Size: int64(len(data)), ModTime: layers.Epoch}); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
}

// Builds returns how often the most built group was built, and how many
// builds there were in all.
func (f *Layers) Builds() (max, total int) {
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

// NarHash is the NAR hash the fake reports for package name's store path,
// in the SRI form nix path-info prints: the SHA-256 of the name.
func NarHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
