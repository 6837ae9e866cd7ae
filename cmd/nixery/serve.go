package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/registry"
)

func init() {
	register("serve", "start the registry (images built on demand from Nix)", func(ctx context.Context, args []string) error {
		return serve(ctx, args, os.Getenv, os.Stderr, nil)
	})
}

const serveUsage = `usage: nixery serve [flags]

Serves container images built on demand from Nix: docker pull HOST/shell/curl
gives an image with bash, coreutils, moreutils, nano and curl.

Every flag can also be set by the environment variable in brackets (the
names upstream Nixery uses, where it has one); a flag wins over its variable.
With nothing set the server serves the package set bundled in the binary on
localhost:8080, keeping blobs under the user's cache directory.

`

// serveConfig is the configuration of `nixery serve`.
type serveConfig struct {
	listen         string
	port           string
	pkgsPath       string
	channel        string
	pkgsRepo       string
	storageBackend string
	storagePath    string
	nixTimeout     time.Duration
	popularity     string
	maxBuilds      int
	maxLayers      int
	logFormat      string
}

// parseServe reads flags over environment defaults.
func parseServe(args []string, getenv func(string) string, stderr io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, serveUsage)
		fs.PrintDefaults()
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.listen, "listen", env("NIXERY_LISTEN", ""), "`address` to listen on, e.g. :8080 for every interface [NIXERY_LISTEN] (default localhost:PORT)")
	fs.StringVar(&c.port, "port", env("PORT", "8080"), "`port` to listen on at localhost when -listen is not set [PORT]")
	fs.StringVar(&c.pkgsPath, "pkgs-path", env(nix.EnvPkgsPath, ""), "serve the nixpkgs-shaped tree in `dir` [NIXERY_PKGS_PATH]")
	fs.StringVar(&c.channel, "channel", env(nix.EnvChannel, ""), "serve a nixpkgs `channel` or commit [NIXERY_CHANNEL]")
	fs.StringVar(&c.pkgsRepo, "pkgs-repo", env(nix.EnvPkgsRepo, ""), "serve a nixpkgs git repository at `url`; the tag picks the ref or commit [NIXERY_PKGS_REPO]")
	fs.StringVar(&c.storageBackend, "storage-backend", env("NIXERY_STORAGE_BACKEND", "filesystem"), "storage `backend`; only filesystem [NIXERY_STORAGE_BACKEND]")
	fs.StringVar(&c.storagePath, "storage-path", env("STORAGE_PATH", ""), "`dir` for blobs, the layer cache and the manifest index [STORAGE_PATH] (default: nixery in the user cache directory)")
	timeout := fs.String("nix-timeout", env("NIX_TIMEOUT", "60"), "bound on one Nix build, in `seconds` or as a Go duration (90s, 5m) [NIX_TIMEOUT]")
	fs.StringVar(&c.popularity, "popularity", env("NIX_POPULARITY_URL", ""), "popularity JSON for layer grouping: a file `path` or http(s) URL [NIX_POPULARITY_URL]")
	maxBuilds := fs.String("max-builds", env("NIXERY_MAX_BUILDS", "2"), "bound on concurrent Nix builds [NIXERY_MAX_BUILDS]")
	maxLayers := fs.String("max-layers", env("NIXERY_MAX_LAYERS", strconv.Itoa(layers.DefaultBudget)), "bound on the layers of an image, customisation layer included [NIXERY_MAX_LAYERS]")
	fs.StringVar(&c.logFormat, "log-format", env("NIXERY_LOG_FORMAT", "text"), "log `format`: text or json [NIXERY_LOG_FORMAT]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	var err error
	if c.nixTimeout, err = parseSeconds(*timeout); err != nil || c.nixTimeout <= 0 {
		return nil, fmt.Errorf("serve: NIX_TIMEOUT / -nix-timeout %q: want a positive number of seconds or a duration such as 90s", *timeout)
	}
	if c.maxBuilds, err = strconv.Atoi(*maxBuilds); err != nil || c.maxBuilds < 1 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_BUILDS / -max-builds %q: want a positive integer", *maxBuilds)
	}
	if c.maxLayers, err = strconv.Atoi(*maxLayers); err != nil || c.maxLayers < 2 || c.maxLayers > 125 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_LAYERS / -max-layers %q: want an integer from 2 to 125 (Docker's limit)", *maxLayers)
	}
	if c.storageBackend != "filesystem" {
		return nil, fmt.Errorf("serve: storage backend %q is not supported; use NIXERY_STORAGE_BACKEND=filesystem with STORAGE_PATH", c.storageBackend)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return nil, fmt.Errorf("serve: log format %q: want text or json", c.logFormat)
	}
	if c.listen == "" {
		if _, err := strconv.ParseUint(c.port, 10, 16); err != nil {
			return nil, fmt.Errorf("serve: PORT / -port %q is not a port number", c.port)
		}
		c.listen = net.JoinHostPort("localhost", c.port)
	}
	if c.storagePath == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.storagePath = filepath.Join(dir, "nixery")
	}
	return c, nil
}

// parseSeconds reads "60" as 60 seconds (upstream Nixery's NIX_TIMEOUT) or
// a Go duration.
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// serve runs the registry until ctx ends (SIGTERM or SIGINT in main), then
// shuts down gracefully. ready, when set, is called with the address the
// server listens on.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready func(addr string)) error {
	c, err := parseServe(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// Log lines reach stderr at once when the server is idle; under load
	// a background writer batches them (see registry.LogBuffer).
	logOut := registry.NewLogBuffer(stderr)
	defer logOut.Close()
	var handler slog.Handler
	if c.logFormat == "json" {
		handler = slog.NewJSONHandler(logOut, nil)
	} else {
		handler = slog.NewTextHandler(logOut, nil)
	}
	log := slog.New(handler)

	src, err := nix.SourceFromEnv(func(name string) string {
		switch name {
		case nix.EnvPkgsPath:
			return c.pkgsPath
		case nix.EnvChannel:
			return c.channel
		case nix.EnvPkgsRepo:
			return c.pkgsRepo
		}
		return getenv(name)
	})
	if err != nil {
		return err
	}
	pop, popFrom, err := loadPopularity(ctx, c.popularity)
	if err != nil {
		return err
	}
	bundled, _ := src.(*nix.BundledSource)
	if c.popularity == "" && bundled != nil {
		popFrom = "computed from the whole bundled package set"
	}
	store, err := layers.NewFSStore(filepath.Join(c.storagePath, "store"))
	if err != nil {
		return err
	}
	asm, err := layers.NewAssembler(store, filepath.Join(c.storagePath, "layer-cache"), layers.Options{Logger: log})
	if err != nil {
		return err
	}
	builder := nix.NewBuilder(src, nix.Options{
		Timeout:       c.nixTimeout,
		MaxConcurrent: c.maxBuilds,
		Logger:        log,
		GCRootDir:     filepath.Join(c.storagePath, "gcroots"),
	})

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	log.Info("nixery serving "+src.String(),
		"addr", addr,
		"url", "http://"+addr+"/v2/",
		"storage", c.storagePath,
		"popularity", popFrom,
		"nix_timeout", c.nixTimeout,
		"max_builds", c.maxBuilds,
		"max_layers", c.maxLayers)

	group := layers.Group
	if c.popularity == "" && bundled != nil {
		// Every build waits for the bundled set's popularity, computed
		// once in the background (or read from the storage directory).
		ready := make(chan struct{})
		var computed closure.Popularity
		go func() {
			defer close(ready)
			start := time.Now()
			p, err := bundledPopularity(ctx, bundled, filepath.Join(c.storagePath, "popularity"), c.nixTimeout, log)
			if err != nil {
				log.Error("cannot compute the bundled set's popularity; grouping by graph shape alone", "error", err)
				return
			}
			computed = p
			log.Info("popularity ready", "paths", len(p), "duration", time.Since(start))
		}()
		group = func(g *closure.Graph, _ closure.Popularity, budget int) [][]string {
			<-ready
			return layers.Group(g, computed, budget)
		}
	}
	var regSrc registry.Source = src
	if _, git := src.(*nix.GitSource); !git {
		regSrc = registry.LatestOnly(src) // one version: only "latest" exists
	}
	reg, err := registry.New(registry.Config{
		Realiser:   realiser{builder},
		Source:     regSrc,
		Store:      store,
		Layers:     asm,
		Group:      group,
		Popularity: pop,
		MaxLayers:  c.maxLayers,
		StateDir:   filepath.Join(c.storagePath, "index"),
		MaxBuilds:  c.maxBuilds,
		Logger:     log,
	})
	if err != nil {
		ln.Close()
		return err
	}
	defer reg.Close()
	srv := &http.Server{
		Handler:           reg,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if ready != nil {
		ready(addr)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "addr", addr)
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg.Close() // cancels builds in progress, so waiting requests end
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// realiser adapts nix.Builder to registry.Realiser.
type realiser struct{ b *nix.Builder }

func (r realiser) Realise(ctx context.Context, req registry.Request) (*registry.Realised, error) {
	res, err := r.b.Build(ctx, nix.Request{Packages: req.Packages, System: req.System, Tag: req.Tag})
	if err != nil {
		return nil, err
	}
	pkgs := make([]registry.Package, len(res.Packages))
	for i, p := range res.Packages {
		pkgs[i] = registry.Package{Name: p.Name, Attr: p.Attr, Path: p.Path}
	}
	return &registry.Realised{Graph: res.Graph, Packages: pkgs}, nil
}

// loadPopularity reads NIX_POPULARITY_URL: an http(s) URL or a file path
// (file:// too). Without one, popularity is empty here; for the bundled
// package set serve then computes it with [bundledPopularity], and for other
// sources every store path counts 0, so layers.Group keeps each path with
// its referrers and grouping follows the shape of each image's graph alone.
func loadPopularity(ctx context.Context, from string) (closure.Popularity, string, error) {
	if from == "" {
		return closure.Popularity{}, "none (grouping by graph shape)", nil
	}
	var r io.ReadCloser
	if strings.HasPrefix(from, "http://") || strings.HasPrefix(from, "https://") {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, from, nil)
		if err != nil {
			return nil, "", fmt.Errorf("serve: popularity: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("serve: popularity: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, "", fmt.Errorf("serve: popularity: GET %s: %s", from, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(strings.TrimPrefix(from, "file://"))
		if err != nil {
			return nil, "", fmt.Errorf("serve: popularity: %w", err)
		}
		r = f
	}
	defer r.Close()
	pop, err := closure.LoadPopularity(io.LimitReader(r, 256<<20))
	if err != nil {
		return nil, "", fmt.Errorf("serve: popularity from %s: %w", from, err)
	}
	return pop, from, nil
}

// attrNamesExpr lists the top-level attributes of a package set that are
// derivations. dir arrives as a string argument (--argstr), never as code.
const attrNamesExpr = `{ dir }:
let s = import (/. + dir) { system = "x86_64-linux"; };
in builtins.filter (n: (builtins.tryEval ((s.${n}.type or "") == "derivation")).value) (builtins.attrNames s)`

// bundledPopularity computes the popularity of the bundled package set the
// way upstream Nixery computes nixpkgs': every top-level package is
// realised and closure.Compute counts, for each store path, how many paths
// of the whole set depend on it. The set is fixed, so the result is the
// same on every machine; it is kept in dir/<hash>.json after the first
// computation. The realisation gets ten times the Nix timeout, since on a
// fresh machine it builds the whole set.
func bundledPopularity(ctx context.Context, src *nix.BundledSource, dir string, timeout time.Duration, log *slog.Logger) (closure.Popularity, error) {
	file := filepath.Join(dir, src.Hash()+".json")
	if f, err := os.Open(file); err == nil {
		defer f.Close()
		return closure.LoadPopularity(f)
	}
	pkgs, err := src.Dir()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nix-instantiate", "--eval", "--json", "--strict", "--argstr", "dir", pkgs, "-E", attrNamesExpr)
	cmd.Env = append(os.Environ(), "NIX_CONFIG="+nix.DefaultNixConfig+"\n"+os.Getenv("NIX_CONFIG"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the bundled set: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var names []string
	if err := json.Unmarshal(out, &names); err != nil || len(names) == 0 {
		return nil, fmt.Errorf("listing the bundled set: unexpected output %.200q", out)
	}
	log.Info("computing the bundled set's popularity", "packages", len(names))
	b := nix.NewBuilder(src, nix.Options{Timeout: 10 * timeout, MaxConcurrent: 1, Logger: log})
	res, err := b.Build(ctx, nix.Request{Packages: names, System: nix.DefaultSystem})
	if err != nil {
		return nil, err
	}
	pop := closure.Compute(res.Graph)
	data, err := json.Marshal(pop)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		tmp := file + ".tmp"
		if os.WriteFile(tmp, data, 0o644) == nil {
			os.Rename(tmp, file)
		}
	}
	return pop, nil
}
