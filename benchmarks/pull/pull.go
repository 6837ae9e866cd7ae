package pull

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/benchmarks/speed"
	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
)

// Options configure [Run].
type Options struct {
	// PkgsPath is the package set `nixery serve` builds from
	// (NIXERY_PKGS_PATH), normally corpus.Corpus.PkgsPath. Required.
	PkgsPath string
	// Popularity, when not nil, is written to a JSON file and given to
	// the server as NIX_POPULARITY_URL, so that it groups layers with the
	// same popularity the simulation used (corpus.Corpus.Popularity).
	Popularity closure.Popularity
	// Images are pulled in order, each a list of package attributes (or
	// meta-packages such as "shell"); see [ImageName].
	Images [][]string
	// WorkDir holds the server's storage and log, the engine's data root
	// and log, and the binary. Required; Run creates it.
	WorkDir string
	// Binary is a nixery binary to serve with; "" builds one with
	// `go build ./cmd/nixery` in ModuleDir.
	Binary string
	// ModuleDir is the root of the nixery module; "" searches upwards
	// from the working directory for its go.mod.
	ModuleDir string
	// DockerHost selects the Docker engine: "" starts a private dockerd
	// with an empty data root and stops it at the end (the figures then
	// cannot be disturbed by layers pulled before); otherwise the engine
	// at this DOCKER_HOST is used, and it must not hold any layer of the
	// workload already (Run checks that the first pull finds none), and
	// the images pulled are removed at the end.
	DockerHost string
	// Env adds environment variables for `nixery serve`.
	Env []string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Descriptor is a layer as [Models] sees it: its digest (in a
// simulation, a stand-in for it: equal digests are equal blobs) and its
// size in bytes.
type Descriptor struct {
	Digest string
	Size   int64
}

// Image is the outcome of pulling one image.
type Image struct {
	// Packages is the image's package list as given, Ref the reference
	// pulled (127.0.0.1:<proxy port>/<name>:latest).
	Packages []string
	Ref      string
	// Manifest is the manifest Docker received, ManifestDigest its
	// sha256 digest.
	Manifest       v1.Manifest
	ManifestDigest string
	// Requests are the requests Docker sent during the pull.
	Requests []Request
	// LayerBytes, ConfigBytes and ManifestBytes are the response body
	// bytes Docker downloaded for layers, the config and manifests.
	LayerBytes, ConfigBytes, ManifestBytes int64
	// LayersFetched counts the layer blobs downloaded; AlreadyExists the
	// layers Docker reported as present.
	LayersFetched, AlreadyExists int
	// UpToDate is set when Docker held the image already ("Image is up
	// to date"): it then downloads neither layers nor the config.
	UpToDate bool
	// PerBlobBytes is what a client that skips every layer blob it holds
	// would download for this image; ChainBytes what Docker's rule gives
	// (see [Result]).
	PerBlobBytes, ChainBytes int64
	// Duration is the wall time of `docker pull`, image build included.
	Duration time.Duration
}

// Result is the outcome of [Run].
type Result struct {
	Images []Image
	// LayerBytes, ConfigBytes and ManifestBytes are totals over Images of
	// what Docker downloaded, counted by a proxy between Docker and the
	// server on 127.0.0.1.
	LayerBytes, ConfigBytes, ManifestBytes int64
	// PerBlobBytes models a client that downloads each distinct layer
	// blob once, the first time an image lists it: the sizes of the
	// distinct layers in the manifests served.
	PerBlobBytes int64
	// ChainBytes models the Docker engine's rule (with the classic image
	// store): Docker keeps layers by chain (a layer with everything below
	// it), so it skips the longest prefix of an image's layers that some
	// image pulled before also starts with, and downloads every layer
	// after it even if it holds that blob under another chain. It equals
	// PerBlobBytes when the server lists shared layers first. Docker's
	// measured LayerBytes must equal ChainBytes.
	ChainBytes int64
	// Server is the resource use of `nixery serve` over the whole run:
	// Server.MaxRSS is its peak RSS.
	Server speed.Usage
	// Engine is "private" or the DOCKER_HOST used.
	Engine string
	// Duration is the wall time of all pulls.
	Duration time.Duration
}

// StorePathLayerBytes is LayerBytes without the customisation layers (the
// last layer of each image), the figure [Simulate] predicts.
func (r *Result) StorePathLayerBytes() int64 {
	var n int64
	for _, img := range r.Images {
		n += img.LayerBytes
		last := img.Manifest.Layers[len(img.Manifest.Layers)-1]
		for _, q := range img.Requests {
			if q.Method == http.MethodGet && q.Digest() == last.Digest.String() {
				n -= q.Bytes
			}
		}
	}
	return n
}

// TotalBytes is everything Docker downloaded: layers, configs, manifests.
func (r *Result) TotalBytes() int64 { return r.LayerBytes + r.ConfigBytes + r.ManifestBytes }

// ErrDisagree is returned (wrapped) by [Agree].
var ErrDisagree = errors.New("pull: measured and simulated bytes disagree")

// Agree checks that measured is within tolerance (0.02 for 2%) of
// simulated, relative to simulated.
func Agree(measured, simulated int64, tolerance float64) error {
	if simulated <= 0 {
		return fmt.Errorf("%w: simulated figure %d", ErrDisagree, simulated)
	}
	d := float64(measured-simulated) / float64(simulated)
	if d < -tolerance || d > tolerance {
		return fmt.Errorf("%w: measured %d, simulated %d (%+.2f%%, tolerance %.2f%%)", ErrDisagree, measured, simulated, 100*d, 100*tolerance)
	}
	return nil
}

// ImageName returns the repository name for a package list: the
// attributes lower-cased (Docker accepts only lower-case repository names;
// nixery finds attributes case-insensitively) and joined with "/", so
// ["shell", "libstdcPP6"] is "shell/libstdcpp6".
func ImageName(pkgs []string) string {
	parts := make([]string, len(pkgs))
	for i, p := range pkgs {
		parts[i] = strings.ToLower(p)
	}
	return strings.Join(parts, "/")
}

// Run serves opts.PkgsPath with `nixery serve` on 127.0.0.1, puts a
// counting proxy in front of it, and pulls opts.Images in order with the
// Docker engine, measuring the bytes Docker actually downloaded. It stops
// everything it started before returning.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.PkgsPath == "" || opts.WorkDir == "" || len(opts.Images) == 0 {
		return nil, errors.New("pull: Options need PkgsPath, WorkDir and Images")
	}
	work, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	bin := opts.Binary
	if bin == "" {
		if bin, err = testutil.BuildNixery(ctx, opts.ModuleDir, work); err != nil {
			return nil, err
		}
		log.Info("built nixery", "binary", bin)
	}

	var eng *engine
	if opts.DockerHost != "" {
		eng = &engine{host: opts.DockerHost, log: log}
		if _, err := eng.docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
			return nil, err
		}
	} else {
		if eng, err = startEngine(ctx, work, log); err != nil {
			return nil, err
		}
		defer eng.stop()
	}

	srv, err := startServer(ctx, bin, work, opts, log)
	if err != nil {
		return nil, err
	}
	res = &Result{Engine: "private"}
	if opts.DockerHost != "" {
		res.Engine = opts.DockerHost
	}
	defer func() {
		u, serr := stopServer(srv)
		if res != nil {
			res.Server = u
		}
		if err == nil && serr != nil {
			res, err = nil, serr
		}
	}()

	px, err := newProxy("http://" + srv.Addr)
	if err != nil {
		return nil, err
	}
	defer px.close()

	var refs []string
	if opts.DockerHost != "" {
		defer func() {
			for _, r := range refs {
				eng.docker(context.WithoutCancel(ctx), "rmi", r)
			}
		}()
	}
	start := time.Now()
	for i, pkgs := range opts.Images {
		ref := px.addr() + "/" + ImageName(pkgs) + ":latest"
		mark := px.mark()
		t0 := time.Now()
		out, err := eng.docker(ctx, "pull", ref)
		if err != nil {
			return nil, fmt.Errorf("pull: image %d: %w\nserver log: %s", i, err, srv.LogPath)
		}
		refs = append(refs, ref)
		dur := time.Since(t0)
		px.settle(10 * time.Second)
		img := Image{Packages: pkgs, Ref: ref, Duration: dur, Requests: px.since(mark)}
		img.AlreadyExists = len(alreadyExists.FindAllString(out, -1))
		img.UpToDate = strings.Contains(out, "Image is up to date")
		if i == 0 && img.AlreadyExists > 0 {
			return nil, fmt.Errorf("pull: the Docker engine already held %d layers of the first image; use a private engine (Options.DockerHost empty) or a clean one", img.AlreadyExists)
		}
		if err := img.account(resolverFor(ctx, srv.Client, "http://"+srv.Addr, px, ImageName(pkgs))); err != nil {
			return nil, fmt.Errorf("pull: image %s: %w", ref, err)
		}
		log.Info("pulled", "ref", ref, "layers", len(img.Manifest.Layers), "fetched", img.LayersFetched,
			"already_exists", img.AlreadyExists, "layer_bytes", img.LayerBytes, "duration", img.Duration)
		res.Images = append(res.Images, img)
	}
	res.Duration = time.Since(start)
	model(res.Images)
	for _, img := range res.Images {
		res.LayerBytes += img.LayerBytes
		res.ConfigBytes += img.ConfigBytes
		res.ManifestBytes += img.ManifestBytes
		res.PerBlobBytes += img.PerBlobBytes
		res.ChainBytes += img.ChainBytes
	}
	return res, nil
}

// alreadyExists matches Docker's progress line for a layer it holds.
var alreadyExists = regexp.MustCompile(`(?m)^[0-9a-f]{12}: Already exists`)

// resolver returns the body of a manifest of the image, by reference (a
// tag or a digest).
type resolver func(reference string) ([]byte, error)

// manifestAccept is what Docker asks for: single-platform manifests and
// indexes, Docker's and OCI's.
const manifestAccept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

// resolverFor resolves references of repository name: a manifest served
// through the proxy before, by digest, or else one fetched from the
// server directly (not through the proxy, so not counted).
func resolverFor(ctx context.Context, client *http.Client, server string, px *proxy, name string) resolver {
	return func(ref string) ([]byte, error) {
		if strings.HasPrefix(ref, "sha256:") {
			if b := px.manifest(ref); b != nil {
				return b, nil
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/v2/"+name+"/manifests/"+ref, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", manifestAccept)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBody))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET manifest %s of %s: status %d: %.300s", ref, name, resp.StatusCode, body)
		}
		return body, nil
	}
}

// manifestOrIndex is what a manifest body can hold: an image manifest's
// layers or an index's manifests.
type manifestOrIndex struct {
	MediaType string          `json:"mediaType"`
	Layers    []v1.Descriptor `json:"layers"`
	Manifests []v1.Descriptor `json:"manifests"`
}

// platformManifest picks the manifest of the engine's platform
// (linux/GOARCH, as Docker does) from an index, or "".
func platformManifest(ix manifestOrIndex) string {
	for _, d := range ix.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			return d.Digest.String()
		}
	}
	return ""
}

// reference returns the tag or digest at the end of a manifest path.
func reference(path string) string {
	if i := strings.LastIndex(path, "/manifests/"); i >= 0 {
		return path[i+len("/manifests/"):]
	}
	return ""
}

// findManifest returns the image manifest Docker pulled and its body: one
// it downloaded through the proxy in this pull if any has layers;
// otherwise the one its manifest requests named. A Docker engine that
// pulled the image (or a manifest of the same digest) before may send
// only a HEAD for the tag and take the manifest from its own content
// store, or fetch an index and find the platform's manifest in its
// store; the manifest is then found by the digest the server answered
// (Docker-Content-Digest), through the proxy's earlier answers or from
// the server directly, following an index to the platform's manifest.
// Without any manifest request it resolves the tag "latest".
func (img *Image) findManifest(resolve resolver) ([]byte, error) {
	var last []byte
	for _, r := range img.Requests {
		if r.Kind() == "manifest" && r.Method == http.MethodGet && r.Body != nil {
			var m manifestOrIndex
			if err := json.Unmarshal(r.Body, &m); err != nil {
				return nil, fmt.Errorf("manifest %s: %w", r.Path, err)
			}
			if len(m.Layers) > 0 {
				last = r.Body
			}
		}
	}
	if last != nil {
		return last, nil
	}
	if resolve == nil {
		return nil, errors.New("Docker fetched no manifest with layers through the proxy, and none can be resolved")
	}
	// The last manifest request names what Docker settled on.
	ref := ""
	for _, r := range img.Requests {
		if r.Kind() != "manifest" || r.Status != http.StatusOK {
			continue
		}
		if r.ContentDigest != "" {
			ref = r.ContentDigest
		} else if x := reference(r.Path); x != "" {
			ref = x
		}
	}
	if ref == "" {
		ref = "latest"
	}
	for hops := 0; hops < 4; hops++ {
		body, err := resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("resolving the manifest Docker used (%s): %w", ref, err)
		}
		var m manifestOrIndex
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", ref, err)
		}
		if len(m.Layers) > 0 {
			return body, nil
		}
		next := platformManifest(m)
		if next == "" {
			return nil, fmt.Errorf("manifest %s has no layers and no linux/%s manifest", ref, runtime.GOARCH)
		}
		ref = next
	}
	return nil, errors.New("manifest indexes nested too deep")
}

// account sums the image's requests by kind, using the manifest Docker
// pulled (see [Image.findManifest]) to tell the config from layers.
func (img *Image) account(resolve resolver) error {
	body, err := img.findManifest(resolve)
	if err != nil {
		return err
	}
	m, err := v1.ParseManifest(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if len(m.Layers) == 0 {
		return errors.New("the manifest Docker pulled has no layers")
	}
	img.Manifest = *m
	img.ManifestDigest = fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	for _, r := range img.Requests {
		if r.Method != http.MethodGet {
			continue
		}
		switch r.Kind() {
		case "manifest":
			img.ManifestBytes += r.Bytes
		case "blob":
			if r.Status != http.StatusOK && r.Status != http.StatusPartialContent {
				return fmt.Errorf("GET %s: status %d", r.Path, r.Status)
			}
			if r.Digest() == img.Manifest.Config.Digest.String() {
				img.ConfigBytes += r.Bytes
			} else {
				img.LayerBytes += r.Bytes
				img.LayersFetched++
			}
		}
	}
	return nil
}

// model fills PerBlobBytes and ChainBytes of each image, pulled in order.
func model(images []Image) {
	lists := make([][]Descriptor, len(images))
	for i, img := range images {
		for _, l := range img.Manifest.Layers {
			lists[i] = append(lists[i], Descriptor{Digest: l.Digest.String(), Size: l.Size})
		}
	}
	perBlob, chain := Models(lists)
	for i := range images {
		images[i].PerBlobBytes, images[i].ChainBytes = perBlob[i], chain[i]
	}
}

// Models returns, for images given as their layer lists and pulled in
// order by one client, the layer bytes each image downloads under two
// models (see [Result]): perBlob, for a client that skips every layer
// blob it holds, and chain, for the Docker engine, which skips only the
// longest prefix of the image's layers that an earlier image also started
// with. Layers are identified by digest. The simulation of a workload can
// call it with its own layer lists to predict what Docker downloads.
func Models(images [][]Descriptor) (perBlob, chain []int64) {
	perBlob = make([]int64, len(images))
	chain = make([]int64, len(images))
	seen := map[string]bool{}   // layer digests
	chains := map[string]bool{} // layer digest prefixes
	for i, ls := range images {
		for _, l := range ls {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				perBlob[i] += l.Size
			}
		}
		var key strings.Builder
		missing := false
		for _, l := range ls {
			key.WriteString(l.Digest)
			key.WriteByte(',')
			if !missing && chains[key.String()] {
				continue
			}
			missing = true
			chain[i] += l.Size
		}
		key.Reset()
		for _, l := range ls {
			key.WriteString(l.Digest)
			key.WriteByte(',')
			chains[key.String()] = true
		}
	}
	return perBlob, chain
}

// nixConfig makes Nix work offline as single-user root; a NIX_CONFIG
// already set is kept after it, so the caller's settings win.
const nixConfig = "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\n"

// startServer serves opts.PkgsPath with bin, its storage and log in work,
// with testutil's launcher.
func startServer(ctx context.Context, bin, work string, opts Options, log *slog.Logger) (*testutil.Nixery, error) {
	env := []string{
		"NIXERY_PKGS_PATH=" + opts.PkgsPath,
		"NIX_CONFIG=" + nixConfig + os.Getenv("NIX_CONFIG"),
	}
	if opts.Popularity != nil {
		data, err := json.Marshal(opts.Popularity)
		if err != nil {
			return nil, err
		}
		name := filepath.Join(work, "popularity.json")
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return nil, err
		}
		env = append(env, "NIX_POPULARITY_URL="+name)
	}
	srv, err := testutil.StartNixery(ctx, testutil.NixeryOptions{
		Binary:       bin,
		Dir:          work,
		Env:          append(env, opts.Env...),
		StartTimeout: 60 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	log.Info("nixery serve started", "addr", srv.Addr, "pkgs", opts.PkgsPath, "log", srv.LogPath)
	return srv, nil
}

// stopServer stops the server and returns its resource use.
func stopServer(srv *testutil.Nixery) (speed.Usage, error) {
	err := srv.Stop()
	u, uerr := speed.UsageOf(srv.ProcessState())
	if err == nil {
		err = uerr
	}
	return u, err
}
