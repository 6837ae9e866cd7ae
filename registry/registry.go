package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
)

// Realiser realises packages with Nix: package nix's Builder, adapted.
type Realiser interface {
	// Realise builds req.Packages for req.System from the package set at
	// req.Tag. The result's graph has the requested outputs as roots, and
	// Packages has one entry per requested name.
	//
	// Errors from package nix (*nix.UnknownPackagesError,
	// *nix.InvalidNameError, *nix.UnsupportedSystemError, *nix.BuildError,
	// nix.ErrTimeout, ...) are turned into registry errors by the handler.
	Realise(ctx context.Context, req Request) (*Realised, error)
}

// Request is what the registry asks a [Realiser] for.
type Request struct {
	Packages []string // sorted, de-duplicated top-level attributes
	System   string   // x86_64-linux or aarch64-linux
	Tag      string   // the image tag: "latest", a git ref or commit
}

// Realised is the result of a [Realiser].
type Realised struct {
	Graph    *closure.Graph
	Packages []Package
}

// Source gives the cache key of the package set for a tag. A key is pinned
// when the tag always denotes the same package set (a commit, a fixed
// tarball, the bundled set); only then are manifests cached.
type Source interface {
	CacheKey(tag string) (key string, pinned bool, err error)
}

// LayerBuilder turns a group of store paths into a layer blob in the store,
// building it only if it is not cached. package layers' Assembler is one.
type LayerBuilder interface {
	Layer(ctx context.Context, paths []string) (layers.Descriptor, error)
}

// GroupFunc splits a closure graph into at most budget groups of store paths,
// most shared first. package layers' Group is one.
type GroupFunc func(g *closure.Graph, pop closure.Popularity, budget int) [][]string

// Config configures a [Registry]. Realiser, Store, Layers and Group are
// required.
type Config struct {
	Realiser Realiser
	// Source gives cache keys; nil means no tag is pinned and every request
	// by tag asks the Realiser again (layers are still cached).
	Source Source
	// Store holds layers, configs and manifests.
	Store  layers.BlobStore
	Layers LayerBuilder
	Group  GroupFunc
	// Popularity weighs the grouping; nil is an empty map.
	Popularity closure.Popularity
	// MaxLayers bounds the layers of an image, the customisation layer
	// included. Zero means 100.
	MaxLayers int
	// StateDir is where the manifest index is kept so that it survives a
	// restart. Empty means memory only.
	StateDir string
	// StoreFS reads store paths for the customisation layer; nil is
	// os.DirFS("/").
	StoreFS fs.FS
	// MaxBuilds bounds concurrent Nix runs; zero means 2.
	MaxBuilds int
	// MaxNameLength and MaxPackages bound image names; zero means
	// DefaultMaxNameLength and DefaultMaxPackages.
	MaxNameLength, MaxPackages int
	// Logger gets one line per request and one per build; nil is
	// slog.Default().
	Logger *slog.Logger
}

// Registry is an http.Handler serving the read-only part of the OCI
// distribution API, building images on demand. Create it with [New].
type Registry struct {
	cfg    Config
	log    *slog.Logger
	sem    chan struct{}
	ctx    context.Context // builds run in it; Close cancels it
	cancel context.CancelFunc

	// hot maps a request path /v2/<name>/manifests/<tag> of a pinned
	// image to its *image: the lean path for cached manifests.
	hot     sync.Map
	hotSize atomic.Int64

	mu       sync.Mutex
	byKey    map[string]*image    // image key -> image (pinned only)
	byDigest map[string]*manifest // manifest digest -> manifest

	images      singleflight[*image]
	layerFlight singleflight[layers.Descriptor]
	known       sync.Map // layer group key -> layers.Descriptor, this process

	stats struct{ nixRuns, layerBuilds atomic.Int64 }

	requests chan requestEntry // to requestLogger
}

// maxHot bounds the number of request paths remembered for the fast path.
const maxHot = 1 << 16

// New returns a registry for cfg, loading the manifest index from
// cfg.StateDir.
func New(cfg Config) (*Registry, error) {
	if cfg.Realiser == nil || cfg.Store == nil || cfg.Layers == nil || cfg.Group == nil {
		return nil, errors.New("registry: Config needs Realiser, Store, Layers and Group")
	}
	if cfg.MaxLayers == 0 {
		cfg.MaxLayers = 100
	}
	if cfg.MaxLayers < 2 {
		return nil, fmt.Errorf("registry: MaxLayers %d: need room for at least one store path layer and the customisation layer", cfg.MaxLayers)
	}
	if cfg.MaxBuilds <= 0 {
		cfg.MaxBuilds = 2
	}
	if cfg.StoreFS == nil {
		cfg.StoreFS = os.DirFS("/")
	}
	if cfg.Popularity == nil {
		cfg.Popularity = closure.Popularity{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Registry{
		cfg:      cfg,
		log:      cfg.Logger,
		sem:      make(chan struct{}, cfg.MaxBuilds),
		byKey:    map[string]*image{},
		byDigest: map[string]*manifest{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.loadIndex(); err != nil {
		return nil, err
	}
	r.requests = make(chan requestEntry, 4096)
	go r.requestLogger()
	return r, nil
}

// Close cancels the builds in progress. The handler keeps serving what is
// cached.
func (r *Registry) Close() error {
	r.cancel()
	return nil
}

// Stats counts the work the registry did since it started.
type Stats struct {
	NixRuns     int64 // calls to the Realiser
	LayerBuilds int64 // calls to the LayerBuilder
}

// Stats returns what the registry did so far.
func (r *Registry) Stats() Stats {
	return Stats{NixRuns: r.stats.nixRuns.Load(), LayerBuilds: r.stats.layerBuilds.Load()}
}

// ServeHTTP implements http.Handler. See the package documentation for the
// routes.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	rw := getRecorder(w)
	r.serve(rw, req)
	end := time.Now()
	e := requestEntry{end, req.Method, req.URL.Path, rw.status, rw.n, end.Sub(start)}
	putRecorder(rw)
	// The line is formatted by the request logger goroutine, off the
	// request path; only when it falls behind (or after Close) is it
	// formatted here.
	if r.ctx.Err() == nil {
		select {
		case r.requests <- e:
			return
		default:
		}
	}
	r.logRequest(e)
}

// requestEntry is one request's log line, before formatting.
type requestEntry struct {
	end          time.Time
	method, path string
	status       int
	bytes        int64
	duration     time.Duration
}

// logRequest writes e's line. The record is made by hand, without the
// caller's PC that Logger.LogAttrs would look up.
func (r *Registry) logRequest(e requestEntry) {
	h := r.log.Handler()
	if !h.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	rec := slog.NewRecord(e.end, slog.LevelInfo, "request", 0)
	rec.AddAttrs(
		slog.String("method", e.method),
		slog.String("path", e.path),
		slog.Int("status", e.status),
		slog.Int64("bytes", e.bytes),
		slog.Duration("duration", e.duration),
	)
	h.Handle(context.Background(), rec)
}

// requestLogger formats request lines until Close, then drains what is
// left.
func (r *Registry) requestLogger() {
	for {
		select {
		case e := <-r.requests:
			r.logRequest(e)
		case <-r.ctx.Done():
			for {
				select {
				case e := <-r.requests:
					r.logRequest(e)
				case <-time.After(100 * time.Millisecond):
					return
				}
			}
		}
	}
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		if v, ok := r.hot.Load(p); ok { // a cached manifest by tag
			img := v.(*image)
			img.m[negotiate(req.Header["Accept"])].serve(w, req)
			return
		}
	}
	if err := r.route(w, req, p); err != nil {
		r.fail(w, req, err)
	}
}

// fail writes err and logs its cause.
func (r *Registry) fail(w http.ResponseWriter, req *http.Request, err error) {
	var re *Error
	if errors.As(err, &re) && re.Err != nil {
		lvl := slog.LevelInfo
		if re.Code.Status >= 500 {
			lvl = slog.LevelError
		}
		r.log.LogAttrs(req.Context(), lvl, "request failed",
			slog.String("path", req.URL.Path),
			slog.String("code", re.Code.Code),
			slog.String("error", re.Err.Error()))
	} else if !errors.As(err, &re) {
		r.log.LogAttrs(req.Context(), slog.LevelError, "request failed",
			slog.String("path", req.URL.Path),
			slog.String("error", err.Error()))
	}
	writeError(w, req, err)
}

var errReadOnly = newError(CodeUnsupported, "this registry is read-only: images are built from Nix on demand, not pushed")

// route parses the path from its end, because a repository name may contain
// slashes: /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>,
// /v2/<name>/tags/list.
func (r *Registry) route(w http.ResponseWriter, req *http.Request, p string) error {
	if p == "/v2" || p == "/v2/" {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			return errReadOnly
		}
		h := w.Header()
		h.Set("Docker-Distribution-API-Version", "registry/2.0")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			w.Write([]byte("{}"))
		}
		return nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return newError(CodeNotFound, "no such route: the registry API lives under /v2/")
	}
	readOnly := req.Method == http.MethodGet || req.Method == http.MethodHead
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		if !readOnly {
			return errReadOnly
		}
		return r.serveTags(w, req, name)
	}
	if i := strings.LastIndex(rest, "/blobs/uploads"); i >= 0 && (len(rest) == i+len("/blobs/uploads") || rest[i+len("/blobs/uploads")] == '/') {
		return errReadOnly
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return newError(CodeNotFound, "no such route %q", truncate(p, 128))
	}
	ref := rest[i+1:]
	j := strings.LastIndexByte(rest[:i], '/')
	if j < 0 {
		return newError(CodeNotFound, "no such route %q", truncate(p, 128))
	}
	name, kind := rest[:j], rest[j+1:i]
	switch kind {
	case "manifests":
		if !readOnly {
			return errReadOnly
		}
		return r.serveManifest(w, req, name, ref)
	case "blobs":
		if !readOnly {
			return errReadOnly
		}
		return r.serveBlob(w, req, name, ref)
	}
	return newError(CodeNotFound, "no such route %q", truncate(p, 128))
}

// serveTags answers the tag list. The registry can build any valid name, so
// existence is not checked here (that would mean running Nix); every name
// lists the one tag that always works, "latest". Git sources accept other
// refs too, but they cannot be enumerated.
func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, name string) error {
	if _, err := ParseName(name, r.cfg.MaxNameLength, r.cfg.MaxPackages); err != nil {
		return err
	}
	tags := []string{"latest"}
	q := req.URL.Query()
	if last := q.Get("last"); last != "" && last >= "latest" {
		tags = tags[:0]
	}
	if s := q.Get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return newError(CodePaginationInvalid, "invalid n=%q", truncate(s, 20))
		}
		if n < len(tags) {
			tags = tags[:n]
		}
	}
	body := fmt.Appendf(nil, `{"name":%q,"tags":[`, name)
	for i, t := range tags {
		if i > 0 {
			body = append(body, ',')
		}
		body = strconv.AppendQuote(body, t)
	}
	body = append(body, "]}"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		w.Write(body)
	}
	return nil
}

// serveBlob serves a blob from the store with Range support. The digest is
// validated before it is used as a file name.
func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, name, ref string) error {
	if err := checkRepoName(name, r.cfg.MaxNameLength); err != nil {
		return err
	}
	h, err := parseDigest(ref)
	if err != nil {
		return err
	}
	f, err := r.cfg.Store.Open(req.Context(), h)
	if err != nil {
		if errors.Is(err, layers.ErrBlobUnknown) || errors.Is(err, fs.ErrNotExist) {
			e := newError(CodeBlobUnknown, "blob %s unknown to registry", ref)
			e.Detail = map[string]string{"digest": ref}
			return e
		}
		return &Error{Code: CodeUnknown, Message: "cannot read blob", Err: err}
	}
	defer f.Close()
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", ref)
	hd.Set("Etag", `"`+ref+`"`)
	hd.Set("Cache-Control", "max-age=31536000, immutable")
	http.ServeContent(w, req, "", time.Time{}, f)
	return nil
}

// LatestOnly wraps a Source whose package set has one version, so that the
// only tag it serves is "latest": other tags are MANIFEST_UNKNOWN, as a
// client (and the conformance suite) expects of a tag that was never
// pushed. Git sources, whose tags name refs and commits, are not wrapped.
func LatestOnly(src Source) Source { return latestOnly{src} }

type latestOnly struct{ Source }

func (s latestOnly) CacheKey(tag string) (string, bool, error) {
	if tag != "latest" {
		e := newError(CodeManifestUnknown, "manifest unknown: this package source has only the tag \"latest\", not %q", truncate(tag, 64))
		e.Detail = map[string]string{"tag": truncate(tag, 128)}
		return "", false, e
	}
	return s.Source.CacheKey(tag)
}
