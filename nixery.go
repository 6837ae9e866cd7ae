// Package nixery builds container images from Nix on demand and serves them
// with the OCI distribution API: `docker pull HOST/shell/curl` gets an image
// holding bash, coreutils, moreutils, nano and curl with their runtime
// closure. It is the library behind the `nixery serve` command; another Go
// server embeds it in a few lines (see the examples):
//
//	srv, err := nixery.New(ctx, nixery.WithStorage("/var/lib/nixery"))
//	...
//	mux.Handle("/v2/", srv)
//
// (or mux.Handle("/", srv) for the landing page, /events, /metrics,
// /healthz and /readyz too), and a Go program that wants images without
// HTTP asks for them:
//
//	img, err := srv.Image(ctx, "curl/jq") // a go-containerregistry v1.Image
//
// # Packages
//
// Data flows one way: package registry (HTTP) asks package images, which
// turns a name into an image, asks package nix to realise the packages and
// package layers to group and build the layers; both use package closure's
// store-path graph. This package only wires them together.
//
// # Storage
//
// Everything lives under one directory ([WithStorage]; the default is
// "nixery" in the user's cache directory, ~/.cache/nixery):
//
//	store/          the blobs: layers, configs, manifests (layers.FSStore),
//	                and damaged blobs set aside in store/quarantine/
//	layer-cache/    the compressed members of every store path and the
//	                descriptor of every layer (layers.Assembler)
//	index/          a record of every image built, when each was last
//	                requested, the collectors' lock (images.Builder)
//	popularity/     the computed popularity of the bundled package set
//	gcroots/        Nix GC roots of the builds in progress, one directory
//	                per process
//	pkgs-<hash>/    the bundled package set, extracted for Nix
//
// Several processes may share the directory: temporary files, record
// saves and garbage collections are locked across processes, and each
// process loads the images the others built.
//
// # Replicas
//
// [WithBlobStore] puts the blobs in an object store (layers/s3store's S3
// store) that several servers, each with its own storage directory,
// share. Such a store also keeps the image records (images.RecordStore),
// so every server serves, by tag and by digest, what any of them built;
// [WithBlobRedirect] sends blob GETs to the store's presigned URLs. The
// README says how replicas coordinate, and the limits of it.
//
// # Limits
//
// The server bounds its work: [WithMaxBuilds] Nix builds run at once and
// [WithMaxQueue] wait (a full queue is a 503 with Retry-After), the
// timeout ([WithTimeout]) counts the wait, a waiting build that every
// request left is cancelled, and a failed build is remembered for a few
// seconds. One client may wait for [WithMaxClientBuilds] images that are
// not built yet (then 429); cached images are never limited. A response
// that makes no progress for [WithWriteTimeout] loses its connection.
// What only an http.Server can bound is the embedder's: `nixery serve`
// caps its connections and sets http.Server.MaxHeaderBytes, and so
// should a server that embeds this one.
//
// # Integrity and garbage collection
//
// Every blob is verified against its digest before it is served, damaged
// ones are quarantined and rebuilt, and a background scrub hashes every
// blob ([WithScrubRate]); see [images.Builder.Blob]. A collector keeps the
// storage within [WithStorageLimit] and drops images not requested within
// [WithRetention]; see [images.Builder.Collect].
package nixery

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/registry"
)

// An Option configures [New].
type Option func(*options)

type options struct {
	storage         string
	source          nix.Source
	sourceCfg       nix.SourceConfig
	popularity      string
	timeout         time.Duration
	maxBuilds       int
	maxQueue        int
	maxLayers       int
	maxClientBuilds int
	writeTimeout    time.Duration
	log             *slog.Logger

	storageLimit int64
	retention    time.Duration
	scrubRate    int64
	nixGC        bool

	store        layers.BlobStore
	blobRedirect time.Duration
}

// WithStorage sets the storage directory (see the package documentation).
func WithStorage(dir string) Option { return func(o *options) { o.storage = dir } }

// WithBlobStore keeps the blobs (layers, configs, manifests) in s rather
// than in the storage directory's store/: an object store such as
// layers/s3store's, which several servers may share. The layer cache and
// the index of images built stay in the storage directory; see the
// package documentation, Replicas.
func WithBlobStore(s layers.BlobStore) Option { return func(o *options) { o.store = s } }

// WithBlobRedirect makes blob GETs a 307 redirect to a URL of the blob
// store valid for expiry, when the store can give one (a
// [layers.URLStore] such as layers/s3store's); zero or negative, the
// default, serves the bytes through this server, with Range. HEAD is
// answered from the object's metadata either way. See
// [images.Builder.BlobURL].
func WithBlobRedirect(expiry time.Duration) Option {
	return func(o *options) { o.blobRedirect = expiry }
}

// WithSource serves the packages of src. The default is the package set
// bundled in the binary (see package nix), extracted in the storage
// directory.
func WithSource(src nix.Source) Option { return func(o *options) { o.source = src } }

// WithSourceConfig serves the package source c chooses (a local tree, a
// channel or a git repository; see [nix.SourceConfig]). The bundled set, if
// chosen, is extracted in the storage directory unless c says otherwise.
func WithSourceConfig(c nix.SourceConfig) Option { return func(o *options) { o.sourceCfg = c } }

// WithPopularity reads the package set's popularity from a file path or an
// http(s) URL in upstream Nixery's format, rather than computing it (the
// bundled set) or doing without (other sources). See [nix.Builder.Popularity].
func WithPopularity(url string) Option { return func(o *options) { o.popularity = url } }

// WithTimeout bounds one Nix build; the default is [nix.DefaultTimeout].
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMaxBuilds bounds the Nix builds that run at once; the default is
// [nix.DefaultMaxConcurrent].
func WithMaxBuilds(n int) Option { return func(o *options) { o.maxBuilds = n } }

// WithMaxQueue bounds the builds that wait for one of [WithMaxBuilds]
// slots; a request that finds the queue full is answered 503 UNAVAILABLE
// with Retry-After at once. The default is [nix.DefaultMaxQueue]; a
// negative n lets no build wait.
func WithMaxQueue(n int) Option { return func(o *options) { o.maxQueue = n } }

// WithMaxClientBuilds bounds the images not built yet that one client may
// wait for at once (429 TOOMANYREQUESTS beyond it); requests for the same
// image count once, and cached images are never limited. The default is
// [registry.DefaultMaxClientBuilds]; a negative n sets no limit.
func WithMaxClientBuilds(n int) Option { return func(o *options) { o.maxClientBuilds = n } }

// WithWriteTimeout bounds how long writing a response may make no
// progress before its connection is closed (see
// [registry.WithWriteTimeout]). The default is
// [registry.DefaultWriteTimeout]; a negative d sets no deadlines.
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithMaxLayers bounds the layers of an image, the customisation layer
// included; the default is [images.DefaultMaxLayers].
func WithMaxLayers(n int) Option { return func(o *options) { o.maxLayers = n } }

// WithStorageLimit bounds the bytes of the blobs and the layer cache;
// past it, the least recently requested images are dropped (see
// [images.Builder.Collect]). Zero, the default, means no limit.
func WithStorageLimit(bytes int64) Option { return func(o *options) { o.storageLimit = bytes } }

// WithRetention drops the images not requested for longer than d. Zero,
// the default, keeps them.
func WithRetention(d time.Duration) Option { return func(o *options) { o.retention = d } }

// WithScrubRate sets the bytes per second at which the background scrub
// hashes blobs; the default is [images.DefaultScrubRate], and a negative
// rate turns the scrub off.
func WithScrubRate(bytesPerSecond int64) Option {
	return func(o *options) { o.scrubRate = bytesPerSecond }
}

// WithNixGC makes each collection also delete from the Nix store the store
// paths of the images it dropped that no kept image has (nix-store
// --delete: Nix keeps what anything else still needs). Off by default.
func WithNixGC(on bool) Option { return func(o *options) { o.nixGC = on } }

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Server builds images on demand and serves them. It is the http.Handler
// of the /v2/ API and, beside it, of the landing page, the build events,
// the metrics and the health checks (see [Server.ServeHTTP]). Create it
// with [New].
type Server struct {
	*registry.Registry
	images  *images.Builder
	nix     nixBackend
	source  nix.Source
	storage string
	stop    context.CancelFunc
	life    context.Context // ends with Close
	metrics *metrics
	log     *slog.Logger
	mux     *http.ServeMux

	listMu  sync.Mutex // the package listing for the page
	listed  []nix.PackageInfo
	listErr error
	listAt  time.Time
	listing bool
}

var _ http.Handler = (*Server)(nil)

// New returns a server with the given options, creating the storage
// directory if need be and loading the images built before. It starts
// computing the package set's popularity in the background; builds wait
// for it.
func New(ctx context.Context, opts ...Option) (*Server, error) {
	o := options{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.storage == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		o.storage = filepath.Join(dir, "nixery")
	}
	src := o.source
	if src == nil {
		c := o.sourceCfg
		if c.BundledDir == "" {
			c.BundledDir = o.storage
		}
		var err error
		if src, err = nix.NewSource(c); err != nil {
			return nil, err
		}
	}
	store := o.store
	if store == nil {
		fss, err := layers.NewFSStore(filepath.Join(o.storage, "store"))
		if err != nil {
			return nil, err
		}
		store = fss
	}
	asm, err := layers.NewAssembler(store, filepath.Join(o.storage, "layer-cache"), layers.Options{Logger: o.log})
	if err != nil {
		return nil, err
	}
	// The Nix builder's hook is set before the metrics exist, which need
	// the images builder; Nix may run (the popularity) before they do.
	var m atomic.Pointer[metrics]
	var shared nix.SharedPopularity
	if st, ok := store.(images.StateStore); ok {
		shared = statePopularity{st}
	}
	nb := nix.NewBuilder(src, nix.Options{
		OnCommand: func(op string, d time.Duration, err error) {
			if m := m.Load(); m != nil {
				m.observeNix(op, d, err)
			}
		},
		Timeout:       o.timeout,
		MaxConcurrent: o.maxBuilds,
		MaxQueue:      o.maxQueue,
		Logger:        o.log,
		GCRootDir:     filepath.Join(o.storage, "gcroots"),
		PopularityURL: o.popularity,
		PopularityDir: filepath.Join(o.storage, "popularity"),

		SharedPopularity: shared,
	})
	ib, err := images.New(ctx, images.Config{
		Nix:       nb,
		Layers:    asm,
		Store:     store,
		IndexDir:  filepath.Join(o.storage, "index"),
		MaxLayers: o.maxLayers,
		Logger:    o.log,

		StorageLimit: o.storageLimit,
		Retention:    o.retention,
		ScrubRate:    o.scrubRate,
		NixGC:        o.nixGC,
		BlobRedirect: o.blobRedirect,
	})
	if err != nil {
		return nil, err
	}
	m.Store(newMetrics(ib, asm))
	s := newServer(ib, nb, src, m.Load(), o.storage, o.log, registry.WithMaxClientBuilds(o.maxClientBuilds), registry.WithWriteTimeout(o.writeTimeout))
	// The popularity is computed for the server's lifetime, so that it is
	// ready before the first build if it can be.
	go nb.Popularity(s.life)
	return s, nil
}

// nixBackend is what a Server asks of the Nix side ([*nix.Builder] is
// one): the popularity, the package listing, and readiness.
type nixBackend interface {
	readiness
	Popularity(ctx context.Context) (*nix.Popularity, error)
	Packages(ctx context.Context) ([]nix.PackageInfo, error)
}

// newServer puts a Server together from its parts.
func newServer(ib *images.Builder, nb nixBackend, src nix.Source, m *metrics, storage string, log *slog.Logger, regOpts ...registry.Option) *Server {
	life, stop := context.WithCancel(context.Background())
	s := &Server{
		Registry: registry.New(ib, append(regOpts, registry.WithLogger(log), registry.WithObserver(m.observeRequest))...),
		images:   ib,
		nix:      nb,
		source:   src,
		storage:  storage,
		stop:     stop,
		life:     life,
		metrics:  m,
		log:      log,
	}
	s.mux = s.routes()
	return s
}

// Storage returns the storage directory.
func (s *Server) Storage() string { return s.storage }

// Source returns the package source the server serves.
func (s *Server) Source() nix.Source { return s.source }

// Image returns the image that name asks for ("shell/curl", see
// [images.ParseName]) at tag "latest": the same image, digest for digest,
// that a pull of HOST/name:latest gets in Docker's format, from the same
// caches.
func (s *Server) Image(ctx context.Context, name string) (v1.Image, error) {
	img, err := s.images.Image(ctx, name, "latest")
	if err != nil {
		return nil, err
	}
	return img.V1(ctx, s.images.Store()), nil
}

// ImageOf returns the image of exactly the given packages (attribute paths
// such as "curl" or "python3Packages.six"), with [images.AlwaysIncluded]
// added as for every image.
func (s *Server) ImageOf(ctx context.Context, packages ...string) (v1.Image, error) {
	img, err := s.images.ImageFor(ctx, images.Request{Packages: packages})
	if err != nil {
		return nil, err
	}
	return img.V1(ctx, s.images.Store()), nil
}

// Listen calls f with every build's progress events ([images.Event]: its
// phases, then its result), on the goroutine of the build; f must be
// quick. An image found in the caches has no build and so no events.
// [Server.ServeHTTP]'s /events streams the same events.
func (s *Server) Listen(f func(images.Event)) { s.images.Listen(f) }

// Popularity waits for the package set's popularity and says where it came
// from.
func (s *Server) Popularity(ctx context.Context) (*nix.Popularity, error) {
	return s.nix.Popularity(ctx)
}

// Close stops the builds in progress and the request logger. Images built
// before are still served.
func (s *Server) Close() error {
	s.stop()
	s.images.Close()
	return s.Registry.Close()
}

// The registry serves image indexes and cached images from a Builder.
var (
	_ registry.IndexImages  = (*images.Builder)(nil)
	_ registry.CachedImages = (*images.Builder)(nil)
)

// statePopularity keeps the popularity a server computed in a shared
// store's state objects (popularity/<name>), where the other replicas on
// the store find it ([nix.Options.SharedPopularity]).
type statePopularity struct{ st images.StateStore }

func (p statePopularity) GetPopularity(ctx context.Context, name string) ([]byte, error) {
	b, _, err := p.st.GetState(ctx, "popularity/"+name)
	return b, err
}

func (p statePopularity) PutPopularity(ctx context.Context, name string, data []byte) error {
	return p.st.PutState(ctx, "popularity/"+name, data)
}
