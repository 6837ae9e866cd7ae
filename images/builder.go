package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/flight"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// imageFormatVersion changes whenever the same store paths would give
// different images (config, customisation layer, layout); it is part of
// every image key, so old images are not reused.
const imageFormatVersion = "nixery-image-v3"

// DefaultMaxLayers bounds the layers of an image, the customisation layer
// included, unless [Config.MaxLayers] says otherwise (NIXERY_MAX_LAYERS in
// the server). Docker refuses images of more than 125 layers; 100 leaves
// room for layers that users stack on top of an image.
const DefaultMaxLayers = 100

// Nix realises packages and reports their closure: package nix's
// [*nix.Builder] is one.
type Nix interface {
	// Build realises req.Packages and returns their closure graph and what
	// each name resolved to.
	Build(ctx context.Context, req nix.Request) (*nix.Result, error)
	// CacheKey names the package set that tag selects; pinned says the
	// name always denotes the same set, so that images may be cached by
	// request.
	CacheKey(tag string) (key string, pinned bool, err error)
	// Popularity is the package set's popularity, which weighs the
	// grouping of store paths into layers.
	Popularity(ctx context.Context) (*nix.Popularity, error)
}

// LayerBuilder builds a layer of store paths into the blob store, caching
// it by content: package layers' [*layers.Assembler] is one.
type LayerBuilder interface {
	Layer(ctx context.Context, paths []string) (layers.Descriptor, error)
	// Format names the layer format; layers of one format are
	// byte-identical for the same store paths.
	Format() string
}

// Config configures a [Builder]. Nix, Layers and Store are required.
type Config struct {
	Nix    Nix
	Layers LayerBuilder
	// Store holds the layers (the LayerBuilder writes them there), the
	// configs and the manifests.
	Store layers.BlobStore
	// IndexDir keeps a record of every image built, so that images
	// survive a restart. Empty means memory only.
	IndexDir string
	// StoreFS reads store paths for the customisation layer; nil is
	// os.DirFS("/").
	StoreFS fs.FS
	// MaxLayers bounds the layers of an image, the customisation layer
	// included; zero means [DefaultMaxLayers].
	MaxLayers int
	// MaxPackages bounds the packages of an image; zero means
	// [DefaultMaxPackages].
	MaxPackages int
	// Logger gets a line for every image built and every build that
	// failed; nil is slog.Default().
	Logger *slog.Logger
	// NegativeTTL is how long a request whose build failed for a lasting
	// reason (unknown packages, a failed Nix build; not a timeout or a
	// full queue) is answered with the same error without running Nix
	// again. Zero means [DefaultNegativeTTL]; a negative value remembers
	// no failure.
	NegativeTTL time.Duration

	// Garbage collection and integrity (see [Builder.Collect] and
	// [Builder.Blob]); they need IndexDir.
	//
	// StorageLimit bounds the bytes of the blob store and the layer
	// builder's cache together; zero means no limit. Retention drops the
	// images not requested for longer; zero keeps them. NixGC also
	// deletes from the Nix store the store paths of dropped images that
	// no kept image has (Nix keeps what anything else still needs).
	StorageLimit int64
	Retention    time.Duration
	NixGC        bool
	// GCGrace is how old a blob that no image has must be before a
	// collection deletes it; zero means [DefaultGCGrace].
	GCGrace time.Duration
	// ScrubRate bounds the bytes per second the background scrub hashes;
	// zero means [DefaultScrubRate], a negative rate turns it off.
	ScrubRate int64

	// BlobRedirect, when positive and Store is a [layers.URLStore] (an
	// object store), is the expiry of the URLs that [Builder.BlobURL]
	// hands out: blob GETs are redirected there. Zero serves the bytes.
	BlobRedirect time.Duration
	// History bounds the finished builds, and apart the failed ones, that
	// [Builder.Recent] remembers; zero means [DefaultHistory].
	History int
}

// Builder turns image names into images: it parses the name
// ([ParseName]), realises the packages with [Nix], groups the closure into
// layers ([layers.Group]), builds each layer ([LayerBuilder]) and the
// customisation layer, writes the config and the manifests to the store,
// and keeps the image in its index.
//
// Every image is built once: concurrent requests for it share one build,
// and the index answers later ones. An image is identified by its key, a
// hash of everything its bytes depend on: the image and layer formats, the
// layer budget, the popularity's fingerprint, the package source, the
// system, the command, the attribute paths the names resolved to and their
// store paths. Because the key is made of the resolved attribute paths,
// every spelling of a package ("HELLO", "hello") gives the same image.
// Requests to a pinned source (a commit, the bundled set) are remembered
// too, so that a cached image is found without running Nix, also after a
// restart.
//
// A build runs for the Builder's lifetime, not for the request's. While it
// waits for a Nix slot (see [nix.Request].Started), it ends when every
// request waiting for it has left; once Nix runs, it finishes, so that the
// next request finds its image. A build that failed for a lasting reason
// is remembered for [Config.NegativeTTL].
//
// A Builder is safe for concurrent use.
type Builder struct {
	cfg    Config
	log    *slog.Logger
	index  *index
	ctx    context.Context // builds run in it; Close cancels it
	cancel context.CancelFunc

	requests flight.Group[*Image] // by request key: one Nix run
	images   flight.Group[*Image] // by image key: one assembly
	failed   failures             // by request key: recent lasting failures

	pop atomic.Pointer[nix.Popularity] // the latest popularity, once known

	events events // build progress and history
	stats  struct{ manifestHits, manifestMisses atomic.Int64 }

	verifier  *layers.Verifier
	repairs   flight.Group[struct{}] // by blob digest: one rebuild
	inflight  inflight               // blobs of images being assembled or repaired
	gc        gcState
	coord     coord // with other servers on a shared store
	refreshMu sync.Mutex
	refreshed time.Time
	// sharedMu and sharedAt pace refreshShared.
	sharedMu sync.Mutex
	sharedAt time.Time
	wg       sync.WaitGroup // background work, for Close
}

// New returns a Builder for cfg, loading the index from cfg.IndexDir.
func New(ctx context.Context, cfg Config) (*Builder, error) {
	if cfg.Nix == nil || cfg.Layers == nil || cfg.Store == nil {
		return nil, errors.New("images: Config needs Nix, Layers and Store")
	}
	if cfg.MaxLayers == 0 {
		cfg.MaxLayers = DefaultMaxLayers
	}
	if cfg.MaxLayers < 2 {
		return nil, fmt.Errorf("images: MaxLayers %d: need room for at least one store path layer and the customisation layer", cfg.MaxLayers)
	}
	if cfg.StoreFS == nil {
		cfg.StoreFS = os.DirFS("/")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.GCGrace <= 0 {
		cfg.GCGrace = DefaultGCGrace
	}
	if cfg.ScrubRate == 0 {
		cfg.ScrubRate = DefaultScrubRate
	}
	if cfg.StorageLimit < 0 || cfg.Retention < 0 {
		return nil, fmt.Errorf("images: negative StorageLimit %d or Retention %v", cfg.StorageLimit, cfg.Retention)
	}
	b := &Builder{
		cfg:      cfg,
		log:      cfg.Logger,
		index:    newIndex(cfg.IndexDir, cfg.Store, cfg.Logger),
		verifier: layers.NewVerifier(cfg.Store),
	}
	b.failed.ttl = cfg.NegativeTTL
	b.events.init(cfg.History)
	b.gc.init()
	if st, ok := cfg.Store.(StateStore); ok && cfg.IndexDir != "" {
		b.coord.st, b.coord.server = st, serverName()
	}
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	missing, err := b.index.load(ctx)
	if err != nil {
		return nil, err
	}
	// CachedManifests needs the popularity to find requests of images
	// built before a restart.
	go func() {
		if pop, err := cfg.Nix.Popularity(b.ctx); err == nil {
			b.pop.CompareAndSwap(nil, pop)
		}
	}()
	b.repairAll(missing)
	if cfg.IndexDir != "" {
		b.wg.Add(2)
		go b.collectLoop(cfg.StorageLimit > 0 || cfg.Retention > 0)
		go b.scrubLoop()
	}
	return b, nil
}

// Close cancels the builds, rebuilds, collections and scrubs in progress,
// waits for them to stop, and saves the last-requested times. Images built
// before are still served.
func (b *Builder) Close() error {
	b.cancel()
	b.wg.Wait()
	if b.index.lock == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return b.index.lock.Do(ctx, b.index.syncTimes)
}

// Stats are a Builder's counters.
type Stats struct {
	// ManifestHits counts the requests answered with an image of the
	// index, ManifestMisses the images that had to be assembled.
	ManifestHits, ManifestMisses int64
	// StoredBytes is the size of the blobs of the images in the index.
	StoredBytes int64
}

// Stats returns the Builder's counters.
func (b *Builder) Stats() Stats {
	return Stats{
		ManifestHits:   b.stats.manifestHits.Load(),
		ManifestMisses: b.stats.manifestMisses.Load(),
		StoredBytes:    b.index.blobBytes.Load(),
	}
}

// Store returns the blob store the builder writes to.
func (b *Builder) Store() layers.BlobStore { return b.cfg.Store }

// Image returns the image that name asks for at tag (see [ParseName]),
// building it unless it was built before.
func (b *Builder) Image(ctx context.Context, name, tag string) (*Image, error) {
	if img := b.index.memoized(name, tag); img != nil {
		b.stats.manifestHits.Add(1)
		b.touch(img)
		return img, nil
	}
	req, err := ParseName(name, b.cfg.MaxPackages)
	if err != nil {
		return nil, err
	}
	req.Tag = tag
	img, pinned, err := b.image(ctx, *req)
	if err != nil {
		return nil, err
	}
	if pinned {
		b.index.memoize(name, tag, img)
	}
	b.touch(img)
	return img, nil
}

// CachedManifests returns the manifests of the image that name asks for at
// tag if the image is built and known by its request (a pinned source),
// without building and without waiting for anything. The registry answers
// cached images with it and counts only other requests against a client's
// limit of cold builds.
func (b *Builder) CachedManifests(name, tag string) ([]v1.Descriptor, bool) {
	if img := b.index.memoized(name, tag); img != nil {
		b.stats.manifestHits.Add(1)
		return img.Manifests(), true
	}
	pop := b.pop.Load()
	if pop == nil {
		return nil, false
	}
	r, err := ParseName(name, b.cfg.MaxPackages)
	if err != nil {
		return nil, false
	}
	if tag != "" {
		r.Tag = tag
	}
	srcKey, pinned, err := b.cfg.Nix.CacheKey(r.Tag)
	if err != nil || !pinned {
		return nil, false
	}
	img := b.index.forRequest(b.keyOf(srcKey, pop.Fingerprint, r.System, r.Cmd).request(r.Packages))
	if img == nil {
		return nil, false
	}
	b.index.memoize(name, tag, img)
	b.stats.manifestHits.Add(1)
	return img.Manifests(), true
}

// ImageFor returns the image for req, building it unless it was built
// before. The meta-packages of [ParseName] have no meaning here.
func (b *Builder) ImageFor(ctx context.Context, req Request) (*Image, error) {
	img, _, err := b.image(ctx, req)
	if err != nil {
		return nil, err
	}
	b.touch(img)
	return img, nil
}

// Manifests returns the manifests of the image name asks for at tag, as
// [Image.Manifests] does.
func (b *Builder) Manifests(ctx context.Context, name, tag string) ([]v1.Descriptor, error) {
	img, err := b.Image(ctx, name, tag)
	if err != nil {
		return nil, err
	}
	return img.Manifests(), nil
}

// Manifest returns the manifest with digest h, with its bytes as Data: one
// of an image in the index, or one in the store (written by another
// process sharing it). It is an error wrapping fs.ErrNotExist if there is
// none, and for an image index one of whose members there is none of
// (a collection dropped it, while another member still keeps the index):
// a client would get the index and then no manifest for its platform.
func (b *Builder) Manifest(ctx context.Context, h v1.Hash) (v1.Descriptor, error) {
	d, err := b.manifest(ctx, h)
	if err != nil || !isIndexMedia(d.MediaType) {
		return d, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(d.Data))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: %s: %v", errNotManifest, h, err)
	}
	for _, m := range idx.Manifests {
		if _, err := b.manifest(ctx, m.Digest); err != nil {
			return v1.Descriptor{}, fmt.Errorf("%w: index %s: its member %s is gone", errNotManifest, h, m.Digest)
		}
	}
	return d, nil
}

// manifest is [Builder.Manifest] without the check of an index's members.
func (b *Builder) manifest(ctx context.Context, h v1.Hash) (v1.Descriptor, error) {
	if d, img := b.index.manifest(h); img != nil {
		b.touch(img)
		return d, nil
	}
	d := v1.Descriptor{Digest: h}
	n, err := b.cfg.Store.Stat(ctx, h)
	if err != nil || n > maxManifestBytes {
		return v1.Descriptor{}, fmt.Errorf("%w: %s", errNotManifest, h)
	}
	d.Size = n
	body, err := b.index.readBlob(ctx, d)
	if err != nil {
		return v1.Descriptor{}, err
	}
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if json.Unmarshal(body, &probe) != nil || (probe.MediaType != MediaTypeDockerManifest && probe.MediaType != MediaTypeOCIManifest && !isIndexMedia(probe.MediaType)) {
		return v1.Descriptor{}, fmt.Errorf("%w: %s", errNotManifest, h)
	}
	d.MediaType, d.Data = probe.MediaType, body
	return d, nil
}

// image returns the image for req and whether its source is pinned.
func (b *Builder) image(ctx context.Context, req Request) (*Image, bool, error) {
	r, err := req.normalise(b.cfg.MaxPackages)
	if err != nil {
		return nil, false, err
	}
	srcKey, pinned, err := b.cfg.Nix.CacheKey(r.Tag)
	if err != nil {
		return nil, false, err
	}
	pop, err := b.cfg.Nix.Popularity(ctx)
	if err != nil {
		b.log.LogAttrs(ctx, slog.LevelWarn, "build failed", slog.Any("packages", r.Packages), slog.String("tag", r.Tag),
			slog.String("error", "no popularity to group layers by: "+err.Error()))
		return nil, false, err
	}
	if old := b.pop.Load(); old == nil || old.Fingerprint != pop.Fingerprint {
		b.pop.Store(pop)
	}
	k := b.keyOf(srcKey, pop.Fingerprint, r.System, r.Cmd)
	rk := k.request(r.Packages)
	if pinned {
		if img := b.index.forRequest(rk); img != nil {
			b.stats.manifestHits.Add(1)
			return img, true, nil
		}
		// Another server on the same shared store may have built it.
		if b.index.shared != nil && b.refreshShared(ctx) {
			if img := b.index.forRequest(rk); img != nil {
				return img, true, nil
			}
		}
	}
	if err := b.failed.get(rk); err != nil {
		return nil, pinned, err
	}
	img, err := b.requests.Do(ctx, rk, func(abandoned context.Context) (*Image, error) {
		return b.build(abandoned, r, k, pop, pinned, rk)
	})
	return img, pinned, err
}

// build realises r with Nix and returns its image, assembling it unless
// another request (another spelling) gave the same image before. It runs
// in the Builder's context; abandoned (the flight's) ends when every
// request waiting for the build has left, which cancels the build only
// while it waits for a Nix slot.
func (b *Builder) build(abandoned context.Context, r *Request, k keyParts, pop *nix.Popularity, pinned bool, rk string) (result *Image, err error) {
	start := time.Now()
	t := b.events.start(r)
	hits := 0
	defer func() { t.finish(result, hits, err) }()
	log := b.log.With(slog.Any("packages", r.Packages), slog.String("tag", r.Tag), slog.String("system", r.System))
	ctx, cancel := context.WithCancelCause(b.ctx)
	defer cancel(nil)
	queued := context.AfterFunc(abandoned, func() { cancel(context.Cause(abandoned)) })
	defer queued()
	res, err := b.cfg.Nix.Build(ctx, nix.Request{
		Packages: r.Packages, System: r.System, Tag: r.Tag,
		Started: func() { queued(); t.phase(PhaseEvaluating, 0, 0, "") },
		Progress: func(phase string, done, total int) {
			unit := ""
			if total > 0 {
				unit = "paths"
			}
			t.phase(Phase(phase), int64(done), int64(total), unit)
		},
	})
	nixTime := time.Since(start)
	if err != nil {
		if errors.Is(err, flight.ErrAbandoned) || errors.Is(context.Cause(ctx), flight.ErrAbandoned) {
			log.LogAttrs(ctx, slog.LevelInfo, "build cancelled", slog.Duration("duration", nixTime), slog.String("reason", "every request waiting for it left"))
			return nil, err
		}
		level := slog.LevelWarn
		if errors.As(err, new(interface{ RetryAfter() time.Duration })) {
			level = slog.LevelDebug // a full queue: the request's log line says so
		}
		log.LogAttrs(ctx, level, "build failed", slog.Duration("duration", nixTime), slog.String("error", err.Error()))
		b.failed.put(rk, err)
		return nil, err
	}
	// The GC root keeps the closure in the Nix store while the layers are
	// read from it, and no longer.
	defer res.Release()
	attrs := resolvedAttrs(res.Packages)
	key := k.image(attrs, res.Graph.Roots())
	if !pinned {
		rk = ""
	}
	if img := b.index.get(key); img != nil {
		b.stats.manifestHits.Add(1)
		hits = len(img.layers)
		return img, b.index.add(ctx, img, rk)
	}
	img, err := b.images.Do(ctx, key, func(context.Context) (*Image, error) {
		if img := b.index.get(key); img != nil {
			hits = len(img.layers)
			return img, nil
		}
		b.stats.manifestMisses.Add(1)
		defer b.startBuild(key)()
		img, n, err := b.assemble(ctx, key, attrs, r, res, pop, t)
		hits = n
		if err != nil {
			return nil, err
		}
		defer b.inflight.doneAll(img)
		b.touch(img)
		if err := b.keep(ctx, img, rk); err != nil {
			// The image is served anyway; it is built again after a
			// restart.
			log.LogAttrs(ctx, slog.LevelError, "cannot save the image record", slog.String("error", err.Error()))
		}
		return img, nil
	})
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "build failed", slog.Duration("duration", time.Since(start)), slog.String("error", err.Error()))
		if errors.Is(err, syscall.ENOSPC) {
			b.kickGC(true)
		}
		return nil, err
	}
	b.touch(img) // before a collection can see it
	if err := b.index.add(ctx, img, rk); err != nil {
		log.LogAttrs(ctx, slog.LevelError, "cannot save the image record", slog.String("error", err.Error()))
	}
	b.kickGC(false)
	var total int64
	for _, l := range img.layers {
		total += l.Size
	}
	log.LogAttrs(ctx, slog.LevelInfo, "build",
		slog.Any("attrs", attrs),
		slog.Int("paths", res.Graph.Len()),
		slog.Int("layers", len(img.layers)),
		slog.Int64("bytes", total),
		slog.Duration("nix_duration", nixTime),
		slog.Duration("sbom_duration", img.sbomTime),
		slog.Duration("duration", time.Since(start)),
		slog.String("docker_digest", img.manifests[formatDocker].Digest.String()),
		slog.String("oci_digest", img.manifests[formatOCI].Digest.String()),
	)
	return img, nil
}

// assemble groups the closure into layers, builds them and the
// customisation layer, and stores the config and the manifests.
// It returns how many layers came from the layer cache, when the
// LayerBuilder tells (a [layers.Assembler] does).
func (b *Builder) assemble(ctx context.Context, key string, attrs []string, r *Request, res *nix.Result, pop *nix.Popularity, t *tracker) (*Image, int, error) {
	t.phase(PhaseGrouping, 0, 0, "")
	groups := layers.Group(res.Graph, pop.Map, b.cfg.MaxLayers-1)
	ls := make([]layers.Descriptor, 0, len(groups)+1)
	history := make([]string, 0, len(groups)+1)
	var done []v1.Hash // blobs marked in flight, until the record is kept
	fail := func(err error) (*Image, int, error) {
		for _, h := range done {
			b.inflight.done(h)
		}
		return nil, 0, err
	}
	sizes := make(map[string]int64, res.Graph.Len())
	var total, compressed int64
	for _, g := range groups {
		for _, p := range g {
			if info, ok := res.Graph.Lookup(p); ok {
				sizes[p] = info.NarSize
				total += info.NarSize
			}
		}
	}
	cached, canTell := b.cfg.Layers.(interface {
		CachedLayer(ctx context.Context, paths []string) (layers.Descriptor, bool, error)
	})
	var hits atomic.Int64
	var doneMu sync.Mutex // done, while layers are built
	t.phase(PhaseCompressing, 0, total, "bytes")
	built, err := layers.BuildAll(ctx, groups, func(ctx context.Context, g []string) (layers.Descriptor, error) {
		d, reused := b.knownLayer(ctx, g)
		var err error
		switch {
		case reused:
			hits.Add(1)
		case canTell:
			var hit bool
			d, hit, err = cached.CachedLayer(ctx, g)
			if hit {
				hits.Add(1)
			}
		default:
			d, err = b.cfg.Layers.Layer(ctx, g)
		}
		if err != nil {
			return d, fmt.Errorf("images: layer of %s: %w", summarise(g), err)
		}
		// At once, before another layer is built: a collection must
		// not take it.
		b.inflight.add(d.Digest)
		doneMu.Lock()
		done = append(done, d.Digest)
		doneMu.Unlock()
		return d, nil
	}, func(i int, d layers.Descriptor) {
		for _, p := range groups[i] {
			compressed += sizes[p]
		}
		t.phase(PhaseCompressing, compressed, total, "bytes")
	})
	if err != nil {
		return fail(err)
	}
	for i, d := range built {
		ls = append(ls, d)
		history = append(history, "store paths: "+summarise(groups[i]))
	}
	t.phase(PhaseWriting, 0, 0, "")
	outputs := outputsOf(attrs, res.Packages)
	custom, err := b.customLayer(ctx, res.Packages)
	if err != nil {
		return fail(err)
	}
	b.inflight.add(custom.Digest)
	done = append(done, custom.Digest)
	ls = append(ls, custom)
	history = append(history, "customisation layer: "+strings.Join(attrs, " "))

	config, err := configFor(r.System, ls, history, r.Cmd)
	if err != nil {
		return fail(err)
	}
	img, err := newImage(key, attrs, r.System, config, ls, b.annotationsFor(r.Tag, attrs, res.Graph.Roots()))
	if err != nil {
		return fail(err)
	}
	img.tag, img.groups, img.outputs, img.pathSizes = r.Tag, groups, outputs, sizes
	sbomStart := time.Now()
	docs, err := sbomsFor(img.annotations[ocispec.AnnotationTitle], key, res.Graph)
	if err == nil {
		err = img.attachSBOMs(docs)
	}
	if err != nil {
		return fail(err)
	}
	img.sbomTime = time.Since(sbomStart)
	for h := range img.blobs() {
		b.inflight.add(h)
	}
	for _, h := range done {
		b.inflight.done(h)
	}
	if _, err := layers.Put(ctx, b.cfg.Store, config); err != nil {
		b.inflight.doneAll(img)
		return nil, 0, fmt.Errorf("images: storing the config: %w", err)
	}
	for _, m := range img.manifests {
		if _, err := layers.Put(ctx, b.cfg.Store, m.Data); err != nil {
			b.inflight.doneAll(img)
			return nil, 0, fmt.Errorf("images: storing a manifest: %w", err)
		}
	}
	for _, body := range img.sbomBlobs() {
		if _, err := layers.Put(ctx, b.cfg.Store, body); err != nil {
			b.inflight.doneAll(img)
			return nil, 0, fmt.Errorf("images: storing the SBOM: %w", err)
		}
	}
	return img, int(hits.Load()), nil
}

// knownLayer returns another image's layer of exactly the store paths g,
// built here or by another process on a shared store (see
// [index.layerFor]), if its blob is in the store, whole.
func (b *Builder) knownLayer(ctx context.Context, g []string) (layers.Descriptor, bool) {
	d, ok := b.index.layerFor(g)
	if !ok {
		return layers.Descriptor{}, false
	}
	if n, err := b.cfg.Store.Stat(ctx, d.Digest); err != nil || n != d.Size {
		return layers.Descriptor{}, false
	}
	return d, true
}

// keep saves the record of a new image and then checks that every blob it
// names is in the store, rebuilding those that are not: a collection in
// another process may have deleted a blob the image reused between the
// reuse and the save (after the save, collections see the record).
func (b *Builder) keep(ctx context.Context, img *Image, rk string) error {
	for attempt := 1; ; attempt++ {
		if err := b.index.add(ctx, img, rk); err != nil {
			return err
		}
		missing := b.missingBlobs(ctx, img)
		if len(missing) == 0 {
			return nil
		}
		if attempt == 3 {
			return fmt.Errorf("images: blobs %v of image %s keep disappearing", missing, img.Key)
		}
		b.log.Warn("rebuilding blobs of a new image that a collection removed", "key", img.Key, "blobs", len(missing))
		for _, h := range missing {
			if err := b.rebuild(ctx, img, h); err != nil {
				return err
			}
		}
	}
}

// outputsOf returns the package each of attrs resolved to.
func outputsOf(attrs []string, pkgs []nix.Package) []nix.Package {
	out := make([]nix.Package, 0, len(attrs))
	for _, a := range attrs {
		for _, p := range pkgs {
			if p.Attr == a {
				out = append(out, nix.Package{Name: a, Attr: a, Path: p.Path})
				break
			}
		}
	}
	return out
}

// resolvedAttrs returns the attribute paths packages resolved to, sorted
// and de-duplicated.
func resolvedAttrs(pkgs []nix.Package) []string {
	attrs := make([]string, len(pkgs))
	for i, p := range pkgs {
		attrs[i] = p.Attr
	}
	slices.Sort(attrs)
	return slices.Compact(attrs)
}

// summarise names a group's store paths for its history entry: the first
// few names and a count.
func summarise(paths []string) string {
	const show = 3
	var sb strings.Builder
	for i, p := range paths {
		if i == show {
			fmt.Fprintf(&sb, " and %d more", len(paths)-show)
			break
		}
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(closure.Name(p))
	}
	return sb.String()
}

// keyParts are the inputs of image keys that do not depend on Nix's
// answer.
type keyParts struct {
	prefix string
}

func (b *Builder) keyOf(srcKey, popFingerprint, system string, cmd []string) keyParts {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\x00%s\x00budget=%d\x00pop=%s\x00%s\x00%s\x00%q\x00",
		imageFormatVersion, b.cfg.Layers.Format(), b.cfg.MaxLayers-1, popFingerprint, srcKey, system, cmd)
	return keyParts{prefix: sb.String()}
}

// request returns the key of a request for packages as spelt.
func (k keyParts) request(pkgs []string) string {
	return hashOf(k.prefix, "request", pkgs)
}

// image returns the image key for the resolved attribute paths and their
// store paths.
func (k keyParts) image(attrs, roots []string) string {
	return hashOf(k.prefix, "image", append(slices.Clone(attrs), roots...))
}

func hashOf(prefix, kind string, items []string) string {
	h := sha256.New()
	io.WriteString(h, prefix)
	io.WriteString(h, kind)
	for _, s := range items {
		h.Write([]byte{0})
		io.WriteString(h, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}
