// Package storage measures nixery's storage limit against its target:
// with NIXERY_STORAGE_LIMIT set, a workload that would write several times
// the limit keeps the storage directory within the limit and a tenth, and
// the most recently used images are still served without running Nix.
//
// # The workload
//
// [Run] serves the bundled package set with `nixery serve` on 127.0.0.1
// and pulls distinct images one after the other, each made of one to three
// of the set's [Packages] (drawn with a seeded generator, no name twice),
// every body checked against its digest ([testutil.Puller]). It stops once
// the distinct blobs of the images pulled add up to Options.WouldWrite:
// what a server without a limit would hold. The bundled set is small (its
// store paths compress to about 45 MB), so with the default layer budget
// every image would reuse the same per-path layers and a storage limit
// would never matter; the workload therefore serves with a budget of four
// layers (Options.MaxLayers), which keeps the largest, most popular store
// paths in layers of their own, shared by many images, and puts the rest
// of each closure in layers of that image alone, as a large nixpkgs
// closure under Docker's layer limit has. Every image then writes new
// bytes, and the collector must tell shared blobs from dropped ones.
// The bundled set is used rather than the Debian corpus because its
// source is pinned: a cached image of it is served by tag without Nix,
// which is what the target's last clause checks, while a request to the
// corpus (a local tree, NIXERY_PKGS_PATH) always runs Nix.
//
// # What is measured
//
// The storage directory's size (the apparent bytes of its files, as du
// -sb counts, and the disk blocks) sampled every 100 ms and after every
// pull; what each collection logged; and, after the workload, a pull of
// each of the Options.Recent most recently pulled images, with the Nix
// processes the server started meanwhile counted from its log.
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// Packages are the bundled set's packages the workload draws images from:
// the ones people name, not the libraries they bring along.
var Packages = []string{
	"bashInteractive", "brotli", "bzip2", "coreutils", "curl", "diffutils", "file",
	"findutils", "gawk", "git", "gnugrep", "gnused", "gnutar", "gnutls", "gzip", "hello",
	"jq", "krb5", "less", "lz4", "moreutils", "nano", "openldap", "openssh", "openssl",
	"perl", "python3", "rtmpdump", "sqlite", "tree", "wget", "which", "xz", "zstd",
}

// Options configure [Run].
type Options struct {
	// Limit is NIXERY_STORAGE_LIMIT; 0 means 500 MB.
	Limit int64
	// WouldWrite ends the workload once the distinct blobs of the images
	// pulled add up to it; 0 means four times Limit.
	WouldWrite int64
	// MaxLayers is NIXERY_MAX_LAYERS; 0 means 4 (see the package
	// documentation).
	MaxLayers int
	// Recent is how many of the last images are pulled again at the end;
	// 0 means 20.
	Recent int
	// Seed chooses the images.
	Seed uint64
	// WorkDir holds the server's storage and log (and the binary, if Run
	// builds it). Required.
	WorkDir string
	// Binary is the nixery binary; "" builds one from ModuleDir ("" finds
	// it).
	Binary, ModuleDir string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Result is what [Run] measured.
type Result struct {
	Limit      int64
	Images     int   // distinct images pulled
	WouldWrite int64 // bytes of the distinct blobs of all of them
	Largest    int64 // bytes of the largest image (config and layers)
	// RecentBytes is the bytes of the distinct blobs of the most recent
	// images.
	RecentBytes int64
	// PeakApparent and PeakDisk are the largest sizes of the storage
	// directory seen, in apparent bytes and in disk blocks; Final* after
	// the last collection.
	PeakApparent, PeakDisk   int64
	FinalApparent, FinalDisk int64
	// Collections that removed something, with what they removed in all,
	// and the longest.
	Collections     int
	ImagesDropped   int
	BlobsDeleted    int
	BlobBytes       int64
	LongestCollect  time.Duration
	Recent          int // images pulled again at the end
	RecentFailed    int // of those, pulls that failed
	RecentNixRuns   int // Nix processes started while they were pulled
	Bodies, Wrong   int64
	Duration        time.Duration
	ServerPeakRSS   int64 // ru_maxrss of the server, its Nix children included
	ImagesPerSecond float64
}

// Met reports whether the result meets the target: storage within the
// limit and a tenth, the recent images served whole without Nix, and no
// wrong body.
func (r *Result) Met() error {
	var errs []error
	if r.PeakApparent > r.Limit+r.Limit/10 {
		errs = append(errs, fmt.Errorf("the storage reached %d bytes, more than the limit %d and a tenth", r.PeakApparent, r.Limit))
	}
	if r.RecentFailed > 0 || r.RecentNixRuns > 0 {
		errs = append(errs, fmt.Errorf("of the %d most recent images, %d failed and Nix ran %d times", r.Recent, r.RecentFailed, r.RecentNixRuns))
	}
	if r.Wrong > 0 {
		errs = append(errs, fmt.Errorf("%d of %d bodies did not match their digests", r.Wrong, r.Bodies))
	}
	if r.WouldWrite < 2*r.Limit {
		errs = append(errs, fmt.Errorf("the workload would write only %d bytes, not several times the limit", r.WouldWrite))
	}
	return errors.Join(errs...)
}

// maxImages bounds the workload, should the images be smaller than
// expected.
const maxImages = 3000

// Run runs the workload and measures it.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.WorkDir == "" {
		return nil, errors.New("storage: Options.WorkDir is required")
	}
	if o.Limit == 0 {
		o.Limit = 500_000_000
	}
	if o.WouldWrite == 0 {
		o.WouldWrite = 4 * o.Limit
	}
	if o.MaxLayers == 0 {
		o.MaxLayers = 4
	}
	if o.Recent == 0 {
		o.Recent = 20
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		var err error
		if o.Binary, err = testutil.BuildNixery(ctx, o.ModuleDir, o.WorkDir); err != nil {
			return nil, err
		}
	}
	n, err := testutil.StartNixery(ctx, testutil.NixeryOptions{
		Binary: o.Binary,
		Dir:    o.WorkDir,
		Env: []string{
			"NIXERY_STORAGE_LIMIT=" + strconv.FormatInt(o.Limit, 10),
			"NIXERY_MAX_LAYERS=" + strconv.Itoa(o.MaxLayers),
		},
	})
	if err != nil {
		return nil, err
	}
	defer n.Stop()
	storage := filepath.Join(o.WorkDir, "storage")
	res := &Result{Limit: o.Limit}
	var mu sync.Mutex
	sample := func() {
		a, d := testutil.DirBytes(storage)
		mu.Lock()
		res.PeakApparent, res.PeakDisk = max(res.PeakApparent, a), max(res.PeakDisk, d)
		mu.Unlock()
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				sample()
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	p := &testutil.Puller{Client: n.Client, Base: n.URL("")}
	start := time.Now()
	names := imageNames(o.Seed)
	distinct := map[string]int64{}
	var pulled []string
	var manifests []*v1.Manifest
	for res.WouldWrite < o.WouldWrite && len(pulled) < maxImages {
		name := names()
		m, err := p.Pull(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("storage: pulling image %d, %s: %w", len(pulled)+1, name, err)
		}
		pulled = append(pulled, name)
		manifests = append(manifests, m)
		var size int64
		for _, d := range append(m.Layers, m.Config) {
			size += d.Size
			if _, ok := distinct[d.Digest.String()]; !ok {
				distinct[d.Digest.String()] = d.Size
				res.WouldWrite += d.Size
			}
		}
		res.Largest = max(res.Largest, size)
		sample()
		if len(pulled)%50 == 0 {
			mu.Lock()
			peak := res.PeakApparent
			mu.Unlock()
			log.Info("storage workload", "images", len(pulled), "would_write", res.WouldWrite, "peak", peak)
		}
	}
	res.Images = len(pulled)
	res.Duration = time.Since(start)
	res.ImagesPerSecond = float64(res.Images) / res.Duration.Seconds()

	// The most recent images, pulled again in the order they came.
	mark := n.Mark()
	recent := pulled[max(0, len(pulled)-o.Recent):]
	res.Recent = len(recent)
	seen := map[string]bool{}
	for _, m := range manifests[len(manifests)-len(recent):] {
		for _, d := range append(m.Layers, m.Config) {
			if !seen[d.Digest.String()] {
				seen[d.Digest.String()] = true
				res.RecentBytes += d.Size
			}
		}
	}
	for _, name := range recent {
		if _, err := p.Pull(ctx, name); err != nil {
			log.Warn("a recent image failed", "image", name, "error", err)
			res.RecentFailed++
		}
	}
	res.RecentNixRuns = strings.Count(n.LogSince(mark), `msg="nix command"`)
	close(stop)
	<-sampled
	time.Sleep(time.Second) // the last collection
	res.FinalApparent, res.FinalDisk = testutil.DirBytes(storage)
	res.Bodies, res.Wrong = p.Checked(), p.WrongBodies()
	parseCollections(n.Log(), res)
	if err := n.Stop(); err != nil {
		return nil, err
	}
	res.ServerPeakRSS = n.PeakRSS()
	return res, nil
}

// imageNames returns a generator of distinct image names of one to three
// of Packages, sorted, drawn with seed.
func imageNames(seed uint64) func() string {
	r := rand.New(rand.NewPCG(seed, 0x5107a9e))
	seen := map[string]bool{}
	return func() string {
		for {
			k := 1 + r.IntN(3)
			var pick []string
			for len(pick) < k {
				p := Packages[r.IntN(len(Packages))]
				if !slices.Contains(pick, p) {
					pick = append(pick, p)
				}
			}
			slices.Sort(pick)
			name := strings.Join(pick, "/")
			if !seen[name] {
				seen[name] = true
				return name
			}
		}
	}
}

var collectionLine = regexp.MustCompile(`msg="garbage collection" images=(\d+) blobs=(\d+) blob_bytes=(\d+) .* duration=(\S+)`)

// parseCollections adds up the collections a server logged.
func parseCollections(log string, res *Result) {
	for _, m := range collectionLine.FindAllStringSubmatch(log, -1) {
		res.Collections++
		i, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		bytes, _ := strconv.ParseInt(m[3], 10, 64)
		d, _ := time.ParseDuration(m[4])
		res.ImagesDropped += i
		res.BlobsDeleted += b
		res.BlobBytes += bytes
		res.LongestCollect = max(res.LongestCollect, d)
	}
}
