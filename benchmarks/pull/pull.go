package pull

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nixery-go/nixery/benchmarks/speed"
	"github.com/nixery-go/nixery/closure"
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

// Descriptor is a blob listed in a manifest.
type Descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Manifest is the part of an image manifest a pull needs.
type Manifest struct {
	MediaType string       `json:"mediaType"`
	Config    Descriptor   `json:"config"`
	Layers    []Descriptor `json:"layers"`
}

// Image is the outcome of pulling one image.
type Image struct {
	// Packages is the image's package list as given, Ref the reference
	// pulled (127.0.0.1:<proxy port>/<name>:latest).
	Packages []string
	Ref      string
	// Manifest is the manifest Docker received, ManifestDigest its
	// sha256 digest.
	Manifest       Manifest
	ManifestDigest string
	// Requests are the requests Docker sent during the pull.
	Requests []Request
	// LayerBytes, ConfigBytes and ManifestBytes are the response body
	// bytes Docker downloaded for layers, the config and manifests.
	LayerBytes, ConfigBytes, ManifestBytes int64
	// LayersFetched counts the layer blobs downloaded; AlreadyExists the
	// layers Docker reported as present.
	LayersFetched, AlreadyExists int
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
			if q.Method == http.MethodGet && q.Digest() == last.Digest {
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
		if bin, err = buildBinary(ctx, opts.ModuleDir, work); err != nil {
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
		u, serr := srv.stop()
		if res != nil {
			res.Server = u
		}
		if err == nil && serr != nil {
			res, err = nil, serr
		}
	}()

	px, err := newProxy("http://" + srv.addr)
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
			return nil, fmt.Errorf("pull: image %d: %w\nserver log: %s", i, err, srv.logPath)
		}
		refs = append(refs, ref)
		img := Image{Packages: pkgs, Ref: ref, Duration: time.Since(t0), Requests: px.since(mark)}
		img.AlreadyExists = len(alreadyExists.FindAllString(out, -1))
		if i == 0 && img.AlreadyExists > 0 {
			return nil, fmt.Errorf("pull: the Docker engine already held %d layers of the first image; use a private engine (Options.DockerHost empty) or a clean one", img.AlreadyExists)
		}
		if err := img.account(); err != nil {
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

// account sums the image's requests by kind, using the manifest Docker
// received to tell the config from layers.
func (img *Image) account() error {
	var found bool
	for _, r := range img.Requests {
		if r.Kind() == "manifest" && r.Method == http.MethodGet && r.Body != nil {
			var m Manifest
			if err := json.Unmarshal(r.Body, &m); err != nil {
				return fmt.Errorf("manifest %s: %w", r.Path, err)
			}
			if !found || len(m.Layers) > 0 {
				img.Manifest, found = m, true
				img.ManifestDigest = fmt.Sprintf("sha256:%x", sha256.Sum256(r.Body))
			}
		}
	}
	if !found || len(img.Manifest.Layers) == 0 {
		return errors.New("Docker fetched no manifest with layers through the proxy")
	}
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
			if r.Digest() == img.Manifest.Config.Digest {
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
		lists[i] = img.Manifest.Layers
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

// server is a running `nixery serve`.
type server struct {
	addr    string
	logPath string
	cmd     *exec.Cmd
	done    chan error
}

// nixConfig makes Nix work offline as single-user root; a NIX_CONFIG
// already set is kept after it, so the caller's settings win.
const nixConfig = "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\n"

func startServer(ctx context.Context, bin, work string, opts Options, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	env := []string{}
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if strings.HasPrefix(k, "NIXERY_") || k == "PORT" || k == "STORAGE_PATH" || k == "NIX_TIMEOUT" || k == "NIX_POPULARITY_URL" || k == "NIX_CONFIG" {
			continue
		}
		env = append(env, e)
	}
	env = append(env,
		"PORT="+strconv.Itoa(port),
		"NIXERY_LISTEN=127.0.0.1:"+strconv.Itoa(port),
		"NIXERY_PKGS_PATH="+opts.PkgsPath,
		"NIXERY_STORAGE_BACKEND=filesystem",
		"STORAGE_PATH="+filepath.Join(work, "storage"),
		"NIX_TIMEOUT=600",
		"NIX_CONFIG="+nixConfig+os.Getenv("NIX_CONFIG"),
	)
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
	env = append(env, opts.Env...)
	logPath := filepath.Join(work, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	s := &server{addr: "127.0.0.1:" + strconv.Itoa(port), logPath: logPath, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("pull: starting nixery serve: %w", err)
	}
	go func() { s.done <- s.cmd.Wait(); logf.Close() }()
	log.Info("nixery serve starting", "addr", s.addr, "pkgs", opts.PkgsPath, "log", logPath)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return nil, fmt.Errorf("pull: nixery serve exited at start: %v (see %s)", err, logPath)
		default:
		}
		resp, err := http.Get("http://" + s.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("pull: nixery serve did not answer /v2/ within 60 s (see %s)", logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits (SIGKILL after 30 s) and returns the server's
// resource use.
func (s *server) stop() (speed.Usage, error) {
	var err error
	select {
	case err = <-s.done:
		err = fmt.Errorf("pull: nixery serve exited during the run: %v (see %s)", err, s.logPath)
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case werr := <-s.done:
			if werr != nil {
				err = fmt.Errorf("pull: nixery serve did not shut down cleanly: %v (see %s)", werr, s.logPath)
			}
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
			err = fmt.Errorf("pull: nixery serve did not stop within 30 s of SIGTERM")
		}
	}
	u, uerr := speed.UsageOf(s.cmd.ProcessState)
	if err == nil {
		err = uerr
	}
	return u, err
}

// buildBinary builds cmd/nixery into work.
func buildBinary(ctx context.Context, moduleDir, work string) (string, error) {
	if moduleDir == "" {
		var err error
		if moduleDir, err = findModule(); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(work, "nixery")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/nixery")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pull: go build ./cmd/nixery: %w\n%s", err, out)
	}
	return bin, nil
}

// findModule returns the nearest directory at or above the working
// directory whose go.mod declares the nixery module.
func findModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/nixery-go/nixery\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("pull: cannot find the nixery module above the working directory; set Options.ModuleDir or Options.Binary")
		}
		dir = parent
	}
}
