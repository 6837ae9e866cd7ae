package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

// Images is what the registry serves. Package images' Builder is one.
type Images interface {
	// Manifests returns the manifests of the image name at tag, one per
	// format, each with its bytes as Data; the first is served to a client
	// that asks for none of them. It builds the image if need be.
	Manifests(ctx context.Context, name, tag string) ([]v1.Descriptor, error)
	// Manifest returns the manifest with digest h, with its bytes as Data.
	Manifest(ctx context.Context, h v1.Hash) (v1.Descriptor, error)
	// Blob opens the blob h and returns its size.
	Blob(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error)
}

// CachedImages is an optional capability of [Images]: CachedManifests
// returns the manifests of an image that is built, without building or
// waiting for anything, and false for any other. With it the registry
// answers cached images at once and counts only the other requests by
// tag, which may start a build, against a client's limit
// ([WithMaxClientBuilds]); without it there is no such limit.
type CachedImages interface {
	CachedManifests(name, tag string) ([]v1.Descriptor, bool)
}

// BlobURLs is an optional capability of [Images], for blobs in an object
// store: BlobURL answers from the blob's metadata with its size and,
// unless url is "", a URL where the client is redirected (307) to GET it.
// HEAD is answered from the size alone. ok false means the blob is served
// through Images.Blob, GET and HEAD alike. The registry itself stays
// HTTP-only: where the URL points is the store's business.
type BlobURLs interface {
	BlobURL(ctx context.Context, h v1.Hash) (url string, size int64, ok bool, err error)
}

// ReferrerImages is an optional capability of [Images]: Referrers returns
// the descriptors of the manifests whose subject is the manifest h (an
// image's SBOM artifact), each with its artifactType and annotations, and
// none for a manifest that has none or is unknown. With it the registry
// serves the referrers API (GET /v2/<name>/referrers/<digest>) and its
// tag-schema fallback (the tag sha256-<hex>); without it both are
// NOT_FOUND.
type ReferrerImages interface {
	Referrers(ctx context.Context, h v1.Hash) ([]v1.Descriptor, error)
}

// IndexImages is an optional capability of [Images]: image indexes
// (multi-platform images). Indexes returns the indexes of the image name
// at tag, one per format (a Docker manifest list and an OCI image index),
// each with its bytes as Data, building the images if need be; nil and no
// error for a name that denotes one platform. CachedIndexes answers, as
// [CachedImages] does, without building or waiting.
//
// With it, a request by tag whose Accept header lists an index media type
// gets an index (of the format it prefers); other requests get the image
// of one platform, from Manifests. Manifest serves indexes by digest.
type IndexImages interface {
	Indexes(ctx context.Context, name, tag string) ([]v1.Descriptor, error)
	CachedIndexes(name, tag string) ([]v1.Descriptor, bool)
}

// Media types of image indexes, which a client must accept (list in its
// Accept header) to be served one.
const (
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
)

// DefaultMaxNameLength bounds a repository name unless [WithMaxNameLength]
// says otherwise. The distribution specification advises clients to limit
// a name, with its host, to 255 characters.
const DefaultMaxNameLength = 255

// maxLoggedPath bounds the request path in a log line.
const maxLoggedPath = 256

// DefaultWriteTimeout is how long a response may make no progress before
// its connection is closed, unless [WithWriteTimeout] says otherwise.
const DefaultWriteTimeout = 30 * time.Second

// DefaultMaxClientBuilds is how many images not built yet one client may
// wait for at once, unless [WithMaxClientBuilds] says otherwise.
const DefaultMaxClientBuilds = 4

// An Option configures a [Registry].
type Option func(*Registry)

// WithLogger sets the logger for request lines and failures; the default is
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(r *Registry) { r.log = l } }

// WithMaxNameLength bounds repository names; zero means
// [DefaultMaxNameLength].
func WithMaxNameLength(n int) Option { return func(r *Registry) { r.maxName = n } }

// WithWriteTimeout bounds how long writing a response may make no
// progress: the registry sets a write deadline of now plus d when a
// response starts, and sends blobs in chunks, each with a new deadline,
// so that a large blob is never cut while the client reads it but a
// client that stops reading loses its connection within 2d. Zero means
// [DefaultWriteTimeout]; a negative d sets no deadlines.
func WithWriteTimeout(d time.Duration) Option { return func(r *Registry) { r.writeTimeout = d } }

// WithMaxClientBuilds bounds the images not built yet that one client (an
// IPv4 address, or an IPv6 /64) may wait for at once: a request by tag for
// another one is answered 429 TOOMANYREQUESTS with Retry-After. Requests
// for the same name and tag count once, since they share a build; cached
// images are never limited (see [CachedImages]). Zero means
// [DefaultMaxClientBuilds]; a negative n sets no limit.
func WithMaxClientBuilds(n int) Option { return func(r *Registry) { r.clients.max = n } }

// RequestInfo is what an observer ([WithObserver]) hears of a request.
type RequestInfo struct {
	// Route is "base" (/v2/), "manifests", "blobs", "tags" or "other".
	Route    string
	Method   string
	Status   int
	Bytes    int64 // of the body sent
	Duration time.Duration
}

// WithObserver calls f after every request, on the request's goroutine:
// the hook for metrics. f must be quick.
func WithObserver(f func(RequestInfo)) Option { return func(r *Registry) { r.observe = f } }

// routeOf names the route of path p for [RequestInfo].
func routeOf(p string) string {
	rest, ok := strings.CutPrefix(p, "/v2/")
	switch {
	case p == "/v2" || p == "/v2/":
		return "base"
	case !ok:
		return "other"
	case strings.HasSuffix(rest, "/tags/list"):
		return "tags"
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "other"
	}
	switch j := strings.LastIndexByte(rest[:i], '/'); {
	case j < 0:
		return "other"
	case rest[j+1:i] == "manifests":
		return "manifests"
	case rest[j+1:i] == "blobs":
		return "blobs"
	}
	return "other"
}

// Registry is an http.Handler serving the read-only part of the OCI
// distribution API from an [Images]. Create it with [New].
type Registry struct {
	images       Images
	log          *slog.Logger
	maxName      int
	writeTimeout time.Duration  // <= 0: none
	cached       CachedImages   // nil if images lacks the capability
	referrers    ReferrerImages // nil if images lacks the capability
	indexes      IndexImages    // nil if images lacks the capability
	clients      clientLimit
	observe      func(RequestInfo) // nil: none

	requests  chan requestEntry // to requestLogger
	closed    atomic.Bool
	stop      chan struct{}
	closeOnce sync.Once
	stopped   chan struct{}
}

// New returns a registry serving images. Close it to stop its request
// logger.
func New(images Images, opts ...Option) *Registry {
	r := &Registry{images: images, log: slog.Default(), maxName: DefaultMaxNameLength}
	for _, o := range opts {
		o(r)
	}
	if r.maxName <= 0 {
		r.maxName = DefaultMaxNameLength
	}
	if r.writeTimeout == 0 {
		r.writeTimeout = DefaultWriteTimeout
	}
	if r.clients.max == 0 {
		r.clients.max = DefaultMaxClientBuilds
	}
	r.cached, _ = images.(CachedImages)
	r.referrers, _ = images.(ReferrerImages)
	r.indexes, _ = images.(IndexImages)
	r.requests = make(chan requestEntry, 4096)
	r.stop = make(chan struct{})
	r.stopped = make(chan struct{})
	go r.requestLogger()
	return r
}

// Close writes the request lines still queued and stops the request
// logger; later lines are written by the requests themselves.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		close(r.stop)
		<-r.stopped
	})
	return nil
}

// ServeHTTP implements http.Handler. See the package documentation for the
// routes.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	rw := getRecorder(w, r.writeTimeout)
	if err := r.route(rw, req); err != nil {
		r.fail(rw, req, err)
	}
	end := time.Now()
	e := requestEntry{end, req.Method, req.URL.Path, rw.status, rw.n, end.Sub(start)}
	putRecorder(rw)
	if r.observe != nil {
		r.observe(RequestInfo{Route: routeOf(e.path), Method: e.method, Status: e.status, Bytes: e.bytes, Duration: e.duration})
	}
	// The line is formatted by the request logger goroutine, off the
	// request path; only when it falls behind (or after Close) is it
	// formatted here.
	if !r.closed.Load() {
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
// caller's PC that Logger.LogAttrs would look up. The path is cut to
// maxLoggedPath bytes, so that a client cannot inflate the log.
func (r *Registry) logRequest(e requestEntry) {
	h := r.log.Handler()
	if !h.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	rec := slog.NewRecord(e.end, slog.LevelInfo, "request", 0)
	rec.AddAttrs(
		slog.String("method", e.method),
		slog.String("path", truncate(e.path, maxLoggedPath)),
		slog.Int("status", e.status),
		slog.Int64("bytes", e.bytes),
		slog.Duration("duration", e.duration),
	)
	h.Handle(context.Background(), rec)
}

// requestLogger formats request lines until Close, then drains what is
// left.
func (r *Registry) requestLogger() {
	defer close(r.stopped)
	for {
		select {
		case e := <-r.requests:
			r.logRequest(e)
		case <-r.stop:
			for {
				select {
				case e := <-r.requests:
					r.logRequest(e)
				default:
					return
				}
			}
		}
	}
}

var errReadOnly = newError(CodeUnsupported, "this registry is read-only: images are built from Nix on demand, not pushed")

// route parses the path from its end, because a repository name may contain
// slashes: /v2/<name>/manifests/<ref>, /v2/<name>/blobs/<digest>,
// /v2/<name>/tags/list.
func (r *Registry) route(w http.ResponseWriter, req *http.Request) error {
	p := req.URL.Path
	readOnly := req.Method == http.MethodGet || req.Method == http.MethodHead
	if p == "/v2" || p == "/v2/" {
		if !readOnly {
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
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(rest[:i], '/')
	}
	if j < 0 {
		return newError(CodeNotFound, "no such route %q", truncate(p, 128))
	}
	name, kind, ref := rest[:j], rest[j+1:i], rest[i+1:]
	switch kind {
	case "manifests", "blobs":
	case "referrers":
		if r.referrers == nil {
			return newError(CodeNotFound, "no such route %q: this registry serves no referrers", truncate(p, 128))
		}
	default:
		return newError(CodeNotFound, "no such route %q", truncate(p, 128))
	}
	if !readOnly {
		return errReadOnly
	}
	if err := checkRepoName(name, r.maxName); err != nil {
		return err
	}
	if kind == "blobs" {
		return r.serveBlob(w, req, ref)
	}
	if kind == "referrers" {
		return r.serveReferrers(w, req, ref)
	}
	return r.serveManifest(w, req, name, ref)
}

// serveManifest answers GET and HEAD for a manifest by tag or digest.
func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, name, ref string) error {
	if strings.Contains(ref, ":") { // a digest
		h, err := parseDigest(ref)
		if err != nil {
			return err
		}
		d, err := r.images.Manifest(req.Context(), h)
		if err != nil {
			return unknown(err, CodeManifestUnknown, "manifest", ref)
		}
		writeManifest(w, req, d)
		return nil
	}
	if r.referrers != nil && isReferrersTag(ref) {
		return r.serveReferrersTag(w, req, ref)
	}
	wantIndex := r.indexes != nil && acceptsIndex(req.Header["Accept"])
	if wantIndex {
		if ms, ok := r.indexes.CachedIndexes(name, ref); ok && len(ms) > 0 {
			writeManifest(w, req, ms[negotiate(req.Header["Accept"], ms)])
			return nil
		}
	}
	if r.cached != nil {
		if ms, ok := r.cached.CachedManifests(name, ref); !wantIndex && ok && len(ms) > 0 {
			writeManifest(w, req, ms[negotiate(req.Header["Accept"], ms)])
			return nil
		}
		client, image := clientOf(req.RemoteAddr), name+":"+ref
		if !r.clients.enter(client, image) {
			e := newError(CodeTooManyRequests, "%s waits for %d images not built yet, the most one client may", client, r.clients.max)
			e.RetryAfter = DefaultRetryAfter
			return e
		}
		defer r.clients.leave(client, image)
	}
	if wantIndex {
		ms, err := r.indexes.Indexes(req.Context(), name, ref)
		if err != nil {
			return err
		}
		if len(ms) > 0 {
			writeManifest(w, req, ms[negotiate(req.Header["Accept"], ms)])
			return nil
		}
	}
	ms, err := r.images.Manifests(req.Context(), name, ref)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return errors.New("registry: an image without manifests")
	}
	writeManifest(w, req, ms[negotiate(req.Header["Accept"], ms)])
	return nil
}

// writeManifest writes a manifest with its headers. Manifests by tag vary
// with the Accept header, so caches must key on it.
func writeManifest(w http.ResponseWriter, req *http.Request, d v1.Descriptor) {
	// One backing array for the four header values: a cached manifest is
	// the hot path, and each Header.Set would allocate a slice of its own.
	v := [...]string{string(d.MediaType), strconv.Itoa(len(d.Data)), d.Digest.Algorithm + ":" + d.Digest.Hex, "Accept"}
	vals := v[:]
	h := w.Header()
	h["Content-Type"] = vals[0:1:1]
	h["Content-Length"] = vals[1:2:2]
	h["Docker-Content-Digest"] = vals[2:3:3]
	h["Vary"] = vals[3:4:4]
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(d.Data)
	}
}

// negotiate picks the manifest from a request's Accept headers: the one
// whose media type has the highest q-value, the one listed first on a tie.
// The first manifest is the answer when none is listed (no Accept header,
// */*, or only formats the image does not have), as upstream Nixery and
// most registries answer with Docker v2 schema 2.
func negotiate(accept []string, ms []v1.Descriptor) int {
	best, bestQ := 0, -1.0
	for _, header := range accept {
		for _, item := range strings.Split(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(item))
			if err != nil {
				continue
			}
			i := -1
			for k, m := range ms {
				if string(m.MediaType) == mt {
					i = k
					break
				}
			}
			if i < 0 {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(s, 64); err == nil {
					q = v
				}
			}
			if q > bestQ && q > 0 {
				best, bestQ = i, q
			}
		}
	}
	return best
}

// acceptsIndex reports whether a request's Accept headers list an image
// index media type with a q-value above zero.
func acceptsIndex(accept []string) bool {
	for _, header := range accept {
		if !strings.Contains(header, "index") && !strings.Contains(header, "list") {
			continue // the common case, without parsing
		}
		for _, item := range strings.Split(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(item))
			if err != nil || (mt != MediaTypeDockerManifestList && mt != MediaTypeOCIIndex) {
				continue
			}
			if s, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(s, 64); err == nil && v <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// serveTags answers the tag list. The registry can build any valid name, so
// existence is not checked here (that would mean running Nix); every name
// lists the one tag that always works, "latest". Git sources accept other
// refs too, but they cannot be enumerated.
func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, name string) error {
	if err := checkRepoName(name, r.maxName); err != nil {
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

// serveBlob serves a blob with Range support. The digest is validated
// before it reaches the store.
func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, ref string) error {
	h, err := parseDigest(ref)
	if err != nil {
		return err
	}
	hd := w.Header()
	if bu, ok := r.images.(BlobURLs); ok {
		url, size, ok, err := bu.BlobURL(req.Context(), h)
		if err != nil {
			return unknown(err, CodeBlobUnknown, "blob", ref)
		}
		switch {
		case ok && req.Method == http.MethodHead:
			hd.Set("Content-Type", "application/octet-stream")
			hd.Set("Docker-Content-Digest", ref)
			hd.Set("Etag", `"`+ref+`"`)
			hd.Set("Content-Length", strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusOK)
			return nil
		case ok && url != "":
			// The URL expires soon: it must not be cached.
			hd.Set("Docker-Content-Digest", ref)
			hd.Set("Cache-Control", "no-store")
			http.Redirect(w, req, url, http.StatusTemporaryRedirect)
			return nil
		}
	}
	f, size, err := r.images.Blob(req.Context(), h)
	if err != nil {
		return unknown(err, CodeBlobUnknown, "blob", ref)
	}
	defer f.Close()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", ref)
	hd.Set("Etag", `"`+ref+`"`)
	hd.Set("Cache-Control", "max-age=31536000, immutable")
	// ServeContent finds the length by seeking to the end; it must be the
	// size Images vouched for, or the body would not match the digest.
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != size {
		return fmt.Errorf("registry: blob %s: %d bytes at the end, %d expected: %v", ref, end, size, err)
	}
	// f itself (an *os.File for the filesystem store) goes to
	// ServeContent, so that the body is sent with sendfile.
	http.ServeContent(w, req, "", time.Time{}, f)
	return nil
}

// clientLimit counts, for each client, the distinct images (name and tag
// as requested) it waits for that are not built yet. Requests of one
// client for the same image share one build, so they count once.
type clientLimit struct {
	max int // <= 0: no limit

	mu sync.Mutex
	n  map[string]map[string]int // client -> image -> requests
}

// enter counts a request of client for image, unless the client waits for
// max other images already.
func (l *clientLimit) enter(client, image string) bool {
	if l.max <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	waits := l.n[client]
	if waits[image] == 0 && len(waits) >= l.max {
		return false
	}
	if waits == nil {
		if l.n == nil {
			l.n = map[string]map[string]int{}
		}
		waits = map[string]int{}
		l.n[client] = waits
	}
	waits[image]++
	return true
}

// leave ends a request that enter counted.
func (l *clientLimit) leave(client, image string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	waits := l.n[client]
	if waits[image]--; waits[image] <= 0 {
		delete(waits, image)
	}
	if len(waits) == 0 {
		delete(l.n, client)
	}
}

// clientOf names the client at a request's remote address: its IPv4
// address, or the /64 of its IPv6 address (one host commonly has a whole
// /64).
func clientOf(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// parseDigest validates a digest from a URL: sha256 and 64 lower-case hex
// digits, nothing else (layers.ParseDigest). Only a digest that passes
// reaches the store.
func parseDigest(s string) (v1.Hash, error) {
	h, err := layers.ParseDigest(s)
	if err != nil {
		return v1.Hash{}, &Error{Code: CodeDigestInvalid, Message: printable(err.Error()), Err: err}
	}
	return h, nil
}

// checkRepoName checks a repository name against the distribution
// specification's grammar, relaxed to admit upper-case letters (other
// clients than Docker send attribute names as they are):
//
//	component ::= [a-zA-Z0-9]+ (("." | "_" | "__" | "-"+) [a-zA-Z0-9]+)*
//	name      ::= component ("/" component)*
//
// What the components mean (packages) is not the registry's business.
func checkRepoName(name string, maxLen int) error {
	invalid := func(format string, args ...any) error {
		e := newError(CodeNameInvalid, format, args...)
		e.Detail = map[string]string{"name": truncate(name, 64)}
		return e
	}
	if name == "" {
		return invalid("empty repository name")
	}
	if len(name) > maxLen {
		return invalid("repository name is %d characters long, more than the limit of %d", len(name), maxLen)
	}
	for rest := name; ; {
		c, more, found := strings.Cut(rest, "/")
		if err := checkComponent(c); err != nil {
			return invalid("invalid component %q: %s", truncate(c, 64), err)
		}
		if !found {
			return nil
		}
		rest = more
	}
}

// checkComponent checks one path component of a repository name.
func checkComponent(c string) error {
	if c == "" {
		return errors.New("empty path component")
	}
	alnum := func(b byte) bool {
		return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
	}
	if !alnum(c[0]) || !alnum(c[len(c)-1]) {
		return errors.New("must start and end with a letter or digit")
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		switch {
		case alnum(b):
		case b == '.':
			if !alnum(c[i+1]) {
				return errors.New("'.' must be followed by a letter or digit")
			}
		case b == '_':
			if c[i+1] == '_' {
				i++
			}
			if !alnum(c[i+1]) {
				return errors.New("'_' or '__' must be followed by a letter or digit")
			}
		case b == '-':
			if c[i+1] != '-' && !alnum(c[i+1]) {
				return errors.New("'-' must be followed by '-', a letter or a digit")
			}
		default:
			return fmt.Errorf("character %q is not allowed", b)
		}
	}
	return nil
}
