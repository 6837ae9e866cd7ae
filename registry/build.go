package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// imageFormatVersion changes whenever the registry would build different
// images from the same store paths (config, customisation layer, layout);
// it is part of every image key, so old manifests are not reused.
const imageFormatVersion = "nixery-image-v1"

// manifest is a manifest's bytes with the response headers prepared, so that
// serving a cached manifest allocates nothing.
type manifest struct {
	body      []byte
	digest    string
	mediaType string
	hdrType   []string
	hdrLen    []string
	hdrDigest []string
}

func newManifest(body []byte, mediaType string) *manifest {
	sum := sha256.Sum256(body)
	d := "sha256:" + hex.EncodeToString(sum[:])
	return &manifest{
		body:      body,
		digest:    d,
		mediaType: mediaType,
		hdrType:   []string{mediaType},
		hdrLen:    []string{strconv.Itoa(len(body))},
		hdrDigest: []string{d},
	}
}

// serve writes the manifest. The header slices are shared between requests;
// net/http only reads them.
func (m *manifest) serve(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h["Content-Type"] = m.hdrType
	h["Content-Length"] = m.hdrLen
	h["Docker-Content-Digest"] = m.hdrDigest
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(m.body)
	}
}

// image is a built image: one manifest per format over the same config and
// layers.
type image struct {
	key string
	m   [numFormats]*manifest
}

// record is an image as persisted in StateDir/images/<key>.json. The
// manifests themselves are blobs in the store.
type record struct {
	Key       string   `json:"key"`
	Name      string   `json:"name"`
	Packages  []string `json:"packages"`
	System    string   `json:"system"`
	Pinned    bool     `json:"pinned"`
	Manifests []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"manifests"`
}

// serveManifest answers GET and HEAD for a manifest by tag or digest.
func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, name, ref string) error {
	img, err := ParseName(name, r.cfg.MaxNameLength, r.cfg.MaxPackages)
	if err != nil {
		return err
	}
	if strings.Contains(ref, ":") { // a digest
		if _, err := parseDigest(ref); err != nil {
			return err
		}
		r.mu.Lock()
		m := r.byDigest[ref]
		r.mu.Unlock()
		if m == nil {
			e := newError(CodeManifestUnknown, "manifest %s unknown to registry", ref)
			e.Detail = map[string]string{"digest": ref}
			return e
		}
		m.serve(w, req)
		return nil
	}
	if err := checkTag(ref); err != nil {
		return err
	}
	built, pinned, err := r.image(req.Context(), img, ref)
	if err != nil {
		return err
	}
	if pinned && r.hotSize.Load() < maxHot {
		if _, loaded := r.hot.LoadOrStore(req.URL.Path, built); !loaded {
			r.hotSize.Add(1)
		}
	}
	built.m[negotiate(req.Header["Accept"])].serve(w, req)
	return nil
}

// image returns the image for img at tag, from the cache when the source is
// pinned, building it otherwise. Concurrent calls for the same image share
// one build; a caller that goes away stops waiting but the build goes on.
func (r *Registry) image(ctx context.Context, img *Image, tag string) (*image, bool, error) {
	srcKey, pinned := "", false
	if r.cfg.Source != nil {
		var err error
		srcKey, pinned, err = r.cfg.Source.CacheKey(tag)
		if err != nil {
			var re *Error
			if errors.As(err, &re) {
				return nil, false, err
			}
			e := newError(CodeManifestUnknown, "tag %q: %v", truncate(tag, 64), err)
			e.Err = err
			return nil, false, e
		}
	} else if tag != "latest" {
		return nil, false, newError(CodeManifestUnknown, "tag %q unknown: this package source only has \"latest\"", truncate(tag, 64))
	}
	key := imageKey(srcKey, img)
	if pinned {
		r.mu.Lock()
		cached := r.byKey[key]
		r.mu.Unlock()
		if cached != nil {
			return cached, true, nil
		}
	}
	built, err := r.images.do(ctx, key, func() (*image, error) {
		return r.build(r.ctx, key, img, tag, pinned)
	})
	return built, pinned, err
}

// imageKey identifies an image: the package source, the packages, the
// system, the command and the image format.
func imageKey(srcKey string, img *Image) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%q\x00", imageFormatVersion, srcKey, img.System, img.Cmd)
	for _, p := range img.Packages {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// build runs Nix, groups and builds the layers, and stores config and
// manifests. It logs one line per build.
func (r *Registry) build(ctx context.Context, key string, img *Image, tag string, pinned bool) (*image, error) {
	start := time.Now()
	log := r.log.With(slog.String("image", img.Name), slog.String("tag", tag))
	fail := func(err error) (*image, error) {
		log.LogAttrs(ctx, slog.LevelWarn, "build failed",
			slog.Any("packages", img.Packages),
			slog.String("system", img.System),
			slog.Duration("duration", time.Since(start)),
			slog.String("error", err.Error()))
		var be *nix.BuildError
		if errors.As(err, &be) && be.Log != "" {
			log.LogAttrs(ctx, slog.LevelError, "nix log", slog.String("log", be.Log))
		}
		return nil, err
	}

	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return fail(nixError(ctx.Err()))
	}
	nixStart := time.Now()
	r.stats.nixRuns.Add(1)
	res, err := r.cfg.Realiser.Realise(ctx, Request{Packages: img.Packages, System: img.System, Tag: tag})
	<-r.sem
	nixTime := time.Since(nixStart)
	if err != nil {
		return fail(nixError(err))
	}
	if res == nil || res.Graph == nil {
		return fail(&Error{Code: CodeUnknown, Message: "nix returned no closure", Err: errors.New("registry: Realiser returned no graph")})
	}

	groups := r.cfg.Group(res.Graph, r.cfg.Popularity, r.cfg.MaxLayers-1)
	ls := make([]imageLayer, 0, len(groups)+1)
	hits := 0
	for _, g := range groups {
		desc, hit, err := r.layer(ctx, g)
		if err != nil {
			return fail(&Error{Code: CodeUnknown, Message: "cannot build layer", Err: err})
		}
		if hit {
			hits++
		}
		ls = append(ls, imageLayer{desc, fmt.Sprintf("store paths: %s", summarise(g))})
	}
	tree, err := customisation(r.cfg.StoreFS, res.Packages)
	if err != nil {
		return fail(&Error{Code: CodeUnknown, Message: "cannot build customisation layer", Err: err})
	}
	custom, err := layers.WriteTarLayer(ctx, r.cfg.Store, 0, func(tw *tar.Writer) error { return writeTree(tw, "", tree) })
	if err != nil {
		return fail(&Error{Code: CodeUnknown, Message: "cannot build customisation layer", Err: err})
	}
	ls = append(ls, imageLayer{custom, "customisation layer: " + strings.Join(img.Packages, " ")})

	config, err := configFor(img.System, ls, img.Cmd)
	if err != nil {
		return fail(&Error{Code: CodeUnknown, Message: "cannot write image config", Err: err})
	}
	if err := r.putBlob(ctx, config); err != nil {
		return fail(&Error{Code: CodeUnknown, Message: "cannot store image config", Err: err})
	}
	built := &image{key: key}
	rec := record{Key: key, Name: img.Name, Packages: img.Packages, System: img.System, Pinned: pinned}
	for f := range numFormats {
		body, err := manifestFor(f, config, ls)
		if err != nil {
			return fail(&Error{Code: CodeUnknown, Message: "cannot write manifest", Err: err})
		}
		if err := r.putBlob(ctx, body); err != nil {
			return fail(&Error{Code: CodeUnknown, Message: "cannot store manifest", Err: err})
		}
		built.m[f] = newManifest(body, formatMedia[f].manifest)
		rec.Manifests = append(rec.Manifests, struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		}{formatMedia[f].manifest, built.m[f].digest})
	}
	if err := r.saveRecord(&rec); err != nil {
		// The image is served anyway; it will be rebuilt after a restart.
		log.LogAttrs(ctx, slog.LevelError, "cannot save manifest index", slog.String("error", err.Error()))
	}
	r.mu.Lock()
	if pinned {
		r.byKey[key] = built
	}
	for _, m := range built.m {
		r.byDigest[m.digest] = m
	}
	r.mu.Unlock()

	var total int64
	for _, l := range ls {
		total += l.Size
	}
	log.LogAttrs(ctx, slog.LevelInfo, "build",
		slog.Any("packages", img.Packages),
		slog.String("system", img.System),
		slog.Int("paths", res.Graph.Len()),
		slog.Int("layers", len(ls)),
		slog.Int("layer_cache_hits", hits),
		slog.Int64("bytes", total),
		slog.Duration("nix_duration", nixTime),
		slog.Duration("duration", time.Since(start)),
		slog.String("docker_digest", built.m[formatDocker].digest),
		slog.String("oci_digest", built.m[formatOCI].digest),
	)
	return built, nil
}

// summarise names a group's store paths for its history entry: the first
// few names and a count.
func summarise(paths []string) string {
	const show = 3
	var b strings.Builder
	for i, p := range paths {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(paths)-show)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(closureName(p))
	}
	return b.String()
}

func closureName(p string) string {
	base := filepath.Base(p)
	if i := strings.IndexByte(base, '-'); i >= 0 {
		return base[i+1:]
	}
	return base
}

// layer builds one group of store paths as a layer, once per process even
// when several builds need it at the same time. hit reports that the layer
// was known already.
func (r *Registry) layer(ctx context.Context, paths []string) (layers.Descriptor, bool, error) {
	h := sha256.New()
	for _, p := range paths {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	gk := hex.EncodeToString(h.Sum(nil))
	if v, ok := r.known.Load(gk); ok {
		return v.(layers.Descriptor), true, nil
	}
	desc, err := r.layerFlight.do(ctx, gk, func() (layers.Descriptor, error) {
		r.stats.layerBuilds.Add(1)
		d, err := r.cfg.Layers.Layer(ctx, paths)
		if err == nil {
			r.known.Store(gk, d)
		}
		return d, err
	})
	return desc, false, err
}

// putBlob stores small bytes (a config or manifest) under their digest.
func (r *Registry) putBlob(ctx context.Context, b []byte) error {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if _, err := r.cfg.Store.Stat(ctx, h); err == nil {
		return nil
	}
	bw, err := r.cfg.Store.Create(ctx)
	if err != nil {
		return err
	}
	if _, err := bw.Write(b); err != nil {
		bw.Cancel()
		return err
	}
	return bw.Commit(h)
}

// nixError turns an error from the Realiser into a registry error.
func nixError(err error) error {
	var (
		re      *Error
		unknown *nix.UnknownPackagesError
		invalid *nix.InvalidNameError
		system  *nix.UnsupportedSystemError
		build   *nix.BuildError
	)
	switch {
	case errors.As(err, &re):
		return err
	case errors.As(err, &unknown):
		e := newError(CodeManifestUnknown, "unknown packages: %s", strings.Join(unknown.Names, ", "))
		e.Detail = map[string][]string{"packages": unknown.Names}
		e.Err = err
		return e
	case errors.As(err, &invalid):
		e := newError(CodeNameInvalid, "invalid package name %q: %s", truncate(invalid.Name, 64), invalid.Reason)
		e.Err = err
		return e
	case errors.As(err, &system):
		e := newError(CodeManifestUnknown, "cannot build for %s: %s", system.System, system.Reason)
		if system.Reason == "" {
			e.Message = "cannot build for " + system.System + " with this package source"
		}
		e.Err = err
		return e
	case errors.Is(err, nix.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Message: "nix build timed out", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeUnavailable, Message: "build cancelled: the server is shutting down", Err: err}
	case errors.Is(err, nix.ErrNixNotFound):
		return &Error{Code: CodeUnknown, Message: "nix is not installed on the server", Err: err}
	case errors.As(err, &build):
		return &Error{Code: CodeUnknown, Message: "nix " + build.Op + " failed (the server log has the full output)", Err: err}
	}
	return &Error{Code: CodeUnknown, Message: "nix failed (the server log has the details)", Err: err}
}

// parseDigest validates a digest from a URL: sha256 and 64 lower-case hex
// digits, nothing else. Only a digest that passes reaches the store.
func parseDigest(s string) (v1.Hash, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	bad := func(msg string) (v1.Hash, error) {
		e := newError(CodeDigestInvalid, "invalid digest %q: %s", truncate(s, 80), msg)
		return v1.Hash{}, e
	}
	if !ok {
		return bad("only sha256 digests are supported")
	}
	if len(hexPart) != 64 {
		return bad("a sha256 digest has 64 hex digits")
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return bad("not lower-case hex")
		}
	}
	return v1.Hash{Algorithm: "sha256", Hex: hexPart}, nil
}

// checkRepoName checks a repository name's grammar without interpreting it
// as packages: blob requests accept any well-formed name, since blobs are
// shared between images.
func checkRepoName(name string, maxLen int) error {
	if maxLen <= 0 {
		maxLen = DefaultMaxNameLength
	}
	if name == "" || len(name) > maxLen {
		return newError(CodeNameInvalid, "image name must be 1 to %d characters long", maxLen)
	}
	for _, c := range strings.Split(name, "/") {
		if err := checkComponent(c); err != nil {
			return newError(CodeNameInvalid, "invalid component %q: %s", truncate(c, 64), err)
		}
	}
	return nil
}

// saveRecord writes rec atomically to StateDir/images/<key>.json.
func (r *Registry) saveRecord(rec *record) error {
	if r.cfg.StateDir == "" {
		return nil
	}
	dir := filepath.Join(r.cfg.StateDir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, rec.Key+".json"))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// loadIndex reads the records in StateDir and the manifests they name from
// the store. Records whose manifests are missing are skipped.
func (r *Registry) loadIndex() error {
	if r.cfg.StateDir == "" {
		return nil
	}
	dir := filepath.Join(r.cfg.StateDir, "images")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("registry: reading manifest index: %w", err)
	}
	loaded := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		img, err := r.loadRecord(filepath.Join(dir, name))
		if err != nil {
			r.log.Warn("skipping manifest index entry", "file", name, "error", err)
			continue
		}
		loaded++
		r.mu.Lock()
		if img.pinned {
			r.byKey[img.key] = img.image
		}
		for _, m := range img.m {
			r.byDigest[m.digest] = m
		}
		r.mu.Unlock()
	}
	if loaded > 0 {
		r.log.Info("loaded manifest index", "images", loaded, "dir", dir)
	}
	return nil
}

type loadedImage struct {
	*image
	pinned bool
}

func (r *Registry) loadRecord(file string) (loadedImage, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return loadedImage{}, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return loadedImage{}, err
	}
	if rec.Key+".json" != filepath.Base(file) || len(rec.Manifests) != int(numFormats) {
		return loadedImage{}, errors.New("malformed record")
	}
	img := &image{key: rec.Key}
	for f := range numFormats {
		mr := rec.Manifests[f]
		if mr.MediaType != formatMedia[f].manifest {
			return loadedImage{}, fmt.Errorf("manifest %d has media type %q", f, mr.MediaType)
		}
		h, err := parseDigest(mr.Digest)
		if err != nil {
			return loadedImage{}, err
		}
		rc, err := r.cfg.Store.Open(r.ctx, h)
		if err != nil {
			return loadedImage{}, err
		}
		body, err := io.ReadAll(io.LimitReader(rc, 4<<20))
		rc.Close()
		if err != nil {
			return loadedImage{}, err
		}
		m := newManifest(body, mr.MediaType)
		if m.digest != mr.Digest {
			return loadedImage{}, fmt.Errorf("manifest %s: stored bytes hash to %s", mr.Digest, m.digest)
		}
		if !bytes.Contains(body, []byte(mr.MediaType)) {
			return loadedImage{}, fmt.Errorf("manifest %s is not a %s", mr.Digest, mr.MediaType)
		}
		img.m[f] = m
	}
	return loadedImage{img, rec.Pinned}, nil
}
