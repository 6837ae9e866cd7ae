package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/registry"
)

// Limits of the http.Server, which only the binary owns.
const (
	// defaultMaxConns caps the connections served at once; more wait in
	// the listen backlog.
	defaultMaxConns = 1024
	// defaultMaxHeaderBytes bounds a request's header (net/http's
	// default is 1 MB); a name is at most 255 bytes.
	defaultMaxHeaderBytes = 16 << 10
)

// config is the configuration of `nixery serve`, read once from flags over
// environment variables (a flag wins over its variable) and handed down.
type config struct {
	listen         string // address to listen on
	source         nix.SourceConfig
	storageBackend string
	storagePath    string // "" is the library's default
	nixTimeout     time.Duration
	popularity     string
	maxBuilds      int
	maxQueue       int // 0: no build waits
	maxLayers      int
	maxClient      int           // 0: no limit
	writeTimeout   time.Duration // how long a response may make no progress
	maxConns       int           // 0: no cap
	maxHeaderBytes int
	debugAddr      string // "" serves no debug endpoints
	logFormat      string
}

// sourceFlags registers the flags that choose the package source and bound
// Nix, shared by every command that runs Nix.
func sourceFlags(fs *flag.FlagSet, env func(name, def string) string, c *nix.SourceConfig, timeout *string) {
	fs.StringVar(&c.Path, "pkgs-path", env(nix.EnvPkgsPath, ""), "serve the nixpkgs-shaped tree in `dir` [NIXERY_PKGS_PATH]")
	fs.StringVar(&c.Channel, "channel", env(nix.EnvChannel, ""), "serve a nixpkgs `channel` or commit [NIXERY_CHANNEL]")
	fs.StringVar(&c.Repo, "pkgs-repo", env(nix.EnvPkgsRepo, ""), "serve a nixpkgs git repository at `url`; the tag picks the ref or commit [NIXERY_PKGS_REPO]")
	fs.StringVar(timeout, "nix-timeout", env("NIX_TIMEOUT", strconv.Itoa(int(nix.DefaultTimeout/time.Second))), "bound on one Nix build, in `seconds` or as a Go duration (90s, 5m) [NIX_TIMEOUT]")
}

// envLookup returns a function giving an environment variable or a default.
func envLookup(getenv func(string) string) func(name, def string) string {
	return func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
}

// parseTimeout reads NIX_TIMEOUT / -nix-timeout.
func parseTimeout(s string) (time.Duration, error) {
	d, err := parseSeconds(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("NIX_TIMEOUT / -nix-timeout %q: want a positive number of seconds or a duration such as 90s", s)
	}
	return d, nil
}

// parseSeconds reads "60" as 60 seconds (upstream Nixery's NIX_TIMEOUT) or
// a Go duration.
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// parseServe reads serve's flags over environment defaults.
func parseServe(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, serveUsage)
		fs.PrintDefaults()
	}
	env := envLookup(getenv)
	var timeout string
	fs.StringVar(&c.listen, "listen", env("NIXERY_LISTEN", ""), "`address` to listen on, e.g. :8080 for every interface [NIXERY_LISTEN] (default localhost:PORT)")
	port := fs.String("port", env("PORT", "8080"), "`port` to listen on at localhost when -listen is not set [PORT]")
	sourceFlags(fs, env, &c.source, &timeout)
	fs.StringVar(&c.storageBackend, "storage-backend", env("NIXERY_STORAGE_BACKEND", "filesystem"), "storage `backend`; only filesystem [NIXERY_STORAGE_BACKEND]")
	fs.StringVar(&c.storagePath, "storage-path", env("STORAGE_PATH", ""), "`dir` for blobs, caches and the image index [STORAGE_PATH] (default: nixery in the user cache directory)")
	fs.StringVar(&c.popularity, "popularity", env("NIX_POPULARITY_URL", ""), "popularity JSON for layer grouping: a file `path` or http(s) URL [NIX_POPULARITY_URL]")
	maxBuilds := fs.String("max-builds", env("NIXERY_MAX_BUILDS", strconv.Itoa(nix.DefaultMaxConcurrent)), "bound on concurrent Nix builds [NIXERY_MAX_BUILDS]")
	maxQueue := fs.String("max-queue", env("NIXERY_MAX_QUEUE", strconv.Itoa(nix.DefaultMaxQueue)), "bound on builds waiting for a build slot; 0 lets none wait [NIXERY_MAX_QUEUE]")
	maxLayers := fs.String("max-layers", env("NIXERY_MAX_LAYERS", strconv.Itoa(images.DefaultMaxLayers)), "bound on the layers of an image, customisation layer included [NIXERY_MAX_LAYERS]")
	maxClient := fs.String("max-client-builds", env("NIXERY_MAX_CLIENT_BUILDS", strconv.Itoa(registry.DefaultMaxClientBuilds)), "bound on the images not built yet one client may wait for at once; 0 for none [NIXERY_MAX_CLIENT_BUILDS]")
	writeTimeout := fs.String("write-timeout", env("NIXERY_WRITE_TIMEOUT", registry.DefaultWriteTimeout.String()), "how long a response may make no progress before its connection is closed, in `seconds` or as a Go duration [NIXERY_WRITE_TIMEOUT]")
	maxConns := fs.String("max-conns", env("NIXERY_MAX_CONNS", strconv.Itoa(defaultMaxConns)), "bound on connections served at once; 0 for none [NIXERY_MAX_CONNS]")
	maxHeader := fs.String("max-header-bytes", env("NIXERY_MAX_HEADER_BYTES", strconv.Itoa(defaultMaxHeaderBytes)), "bound on a request's header, in bytes [NIXERY_MAX_HEADER_BYTES]")
	fs.StringVar(&c.debugAddr, "debug-addr", env("NIXERY_DEBUG_ADDR", ""), "`address` for Go's profiling endpoints (/debug/pprof/), e.g. 127.0.0.1:6060; off when empty [NIXERY_DEBUG_ADDR]")
	fs.StringVar(&c.logFormat, "log-format", env("NIXERY_LOG_FORMAT", "text"), "log `format`: text or json [NIXERY_LOG_FORMAT]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	var err error
	if c.nixTimeout, err = parseTimeout(timeout); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if c.maxBuilds, err = strconv.Atoi(*maxBuilds); err != nil || c.maxBuilds < 1 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_BUILDS / -max-builds %q: want a positive integer", *maxBuilds)
	}
	if c.maxQueue, err = strconv.Atoi(*maxQueue); err != nil || c.maxQueue < 0 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_QUEUE / -max-queue %q: want an integer, 0 or more", *maxQueue)
	}
	if c.maxClient, err = strconv.Atoi(*maxClient); err != nil || c.maxClient < 0 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_CLIENT_BUILDS / -max-client-builds %q: want an integer, 0 or more", *maxClient)
	}
	if c.writeTimeout, err = parseSeconds(*writeTimeout); err != nil || c.writeTimeout <= 0 {
		return nil, fmt.Errorf("serve: NIXERY_WRITE_TIMEOUT / -write-timeout %q: want a positive number of seconds or a duration such as 30s", *writeTimeout)
	}
	if c.maxConns, err = strconv.Atoi(*maxConns); err != nil || c.maxConns < 0 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_CONNS / -max-conns %q: want an integer, 0 or more", *maxConns)
	}
	if c.maxHeaderBytes, err = strconv.Atoi(*maxHeader); err != nil || c.maxHeaderBytes < 1024 {
		return nil, fmt.Errorf("serve: NIXERY_MAX_HEADER_BYTES / -max-header-bytes %q: want an integer of at least 1024", *maxHeader)
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
		if _, err := strconv.ParseUint(*port, 10, 16); err != nil {
			return nil, fmt.Errorf("serve: PORT / -port %q is not a port number", *port)
		}
		c.listen = net.JoinHostPort("localhost", *port)
	}
	return c, nil
}

// options turns the configuration into the library's options.
func (c *config) options() []nixery.Option {
	return []nixery.Option{
		nixery.WithStorage(c.storagePath),
		nixery.WithSourceConfig(c.source),
		nixery.WithPopularity(c.popularity),
		nixery.WithTimeout(c.nixTimeout),
		nixery.WithMaxBuilds(c.maxBuilds),
		nixery.WithMaxQueue(orNone(c.maxQueue)),
		nixery.WithMaxLayers(c.maxLayers),
		nixery.WithMaxClientBuilds(orNone(c.maxClient)),
		nixery.WithWriteTimeout(c.writeTimeout),
	}
}

// orNone turns the configuration's 0 ("none") into the library's -1 (its
// zero means the default).
func orNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
