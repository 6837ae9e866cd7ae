package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/layers/gcsstore"
	"github.com/nixery-go/nixery/layers/s3store"
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

// defaultRedirectExpiry is how long a blob redirect's URL is valid unless
// NIXERY_BLOB_REDIRECT_EXPIRY says otherwise: long enough for a slow pull
// of one layer to start, short enough that a leaked URL is soon useless.
const defaultRedirectExpiry = 5 * time.Minute

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

	s3           s3store.Options  // NIXERY_STORAGE_BACKEND=s3
	gcs          gcsstore.Options // NIXERY_STORAGE_BACKEND=gcs
	blobRedirect time.Duration    // 0: blobs are served through nixery

	storageLimit int64         // bytes; 0 is no limit
	retention    time.Duration // 0 keeps images
	scrubRate    int64         // bytes per second; negative is off
	nixGC        bool
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
	finishBuilder := c.builderFlags(fs, env, &timeout)
	blobRedirect := fs.String("blob-redirect", env("NIXERY_BLOB_REDIRECT", "true"), "redirect blob GETs to presigned URLs of the object store (true or false; false serves the bytes, with Range) [NIXERY_BLOB_REDIRECT]")
	redirectExpiry := fs.String("blob-redirect-expiry", env("NIXERY_BLOB_REDIRECT_EXPIRY", defaultRedirectExpiry.String()), "how long a redirect's presigned URL is valid, in `seconds` or as a Go duration [NIXERY_BLOB_REDIRECT_EXPIRY]")
	maxQueue := fs.String("max-queue", env("NIXERY_MAX_QUEUE", strconv.Itoa(nix.DefaultMaxQueue)), "bound on builds waiting for a build slot; 0 lets none wait [NIXERY_MAX_QUEUE]")
	maxClient := fs.String("max-client-builds", env("NIXERY_MAX_CLIENT_BUILDS", strconv.Itoa(registry.DefaultMaxClientBuilds)), "bound on the images not built yet one client may wait for at once; 0 for none [NIXERY_MAX_CLIENT_BUILDS]")
	writeTimeout := fs.String("write-timeout", env("NIXERY_WRITE_TIMEOUT", registry.DefaultWriteTimeout.String()), "how long a response may make no progress before its connection is closed, in `seconds` or as a Go duration [NIXERY_WRITE_TIMEOUT]")
	maxConns := fs.String("max-conns", env("NIXERY_MAX_CONNS", strconv.Itoa(defaultMaxConns)), "bound on connections served at once; 0 for none [NIXERY_MAX_CONNS]")
	maxHeader := fs.String("max-header-bytes", env("NIXERY_MAX_HEADER_BYTES", strconv.Itoa(defaultMaxHeaderBytes)), "bound on a request's header, in bytes [NIXERY_MAX_HEADER_BYTES]")
	fs.StringVar(&c.debugAddr, "debug-addr", env("NIXERY_DEBUG_ADDR", ""), "`address` for Go's profiling endpoints (/debug/pprof/), e.g. 127.0.0.1:6060; off when empty [NIXERY_DEBUG_ADDR]")
	fs.StringVar(&c.logFormat, "log-format", env("NIXERY_LOG_FORMAT", "text"), "log `format`: text or json [NIXERY_LOG_FORMAT]")
	storageLimit := fs.String("storage-limit", env("NIXERY_STORAGE_LIMIT", "0"), "bound on the `bytes` of blobs and layer cache (2GB, 500MB, 1GiB); past it the least recently requested images are dropped; 0 is no limit [NIXERY_STORAGE_LIMIT]")
	retention := fs.String("retention", env("NIXERY_RETENTION", "0"), "drop images not requested for this `duration` (720h); 0 keeps them [NIXERY_RETENTION]")
	scrubRate := fs.String("scrub-rate", env("NIXERY_SCRUB_RATE", formatBytes(images.DefaultScrubRate)), "`bytes` per second the background scrub hashes; 0 turns it off [NIXERY_SCRUB_RATE]")
	nixGC := fs.String("nix-gc", env("NIXERY_NIX_GC", "false"), "also delete the store paths of dropped images from the Nix store (true or false) [NIXERY_NIX_GC]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := c.parseStorage(*storageLimit, *retention, *scrubRate, *nixGC); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	if err := finishBuilder(); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	var err error
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
	redirect, err := strconv.ParseBool(*blobRedirect)
	if err != nil {
		return nil, fmt.Errorf("serve: NIXERY_BLOB_REDIRECT / -blob-redirect %q: want true or false", *blobRedirect)
	}
	expiry, err := parseSeconds(*redirectExpiry)
	if err != nil || expiry < time.Second || expiry > 7*24*time.Hour {
		return nil, fmt.Errorf("serve: NIXERY_BLOB_REDIRECT_EXPIRY / -blob-redirect-expiry %q: want a duration from 1s to 168h (S3's and GCS's limit)", *redirectExpiry)
	}
	if redirect {
		c.blobRedirect = expiry
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

// builderFlags registers the flags of everything that builds images, which
// `nixery serve`, `nixery build` and `nixery push` share so that they build
// the same images into the same storage: the package source, the Nix
// timeout, the storage, the popularity, the layer budget and the bound on
// Nix builds. The returned function checks them once the flags are parsed.
func (c *config) builderFlags(fs *flag.FlagSet, env func(name, def string) string, timeout *string) func() error {
	sourceFlags(fs, env, &c.source, timeout)
	fs.StringVar(&c.storageBackend, "storage-backend", env("NIXERY_STORAGE_BACKEND", "filesystem"), "storage `backend`: filesystem, s3 or gcs [NIXERY_STORAGE_BACKEND]")
	fs.StringVar(&c.s3.Bucket, "s3-bucket", env("S3_BUCKET", ""), "S3 `bucket` of the s3 backend [S3_BUCKET]")
	fs.StringVar(&c.s3.Endpoint, "s3-endpoint", env("S3_ENDPOINT", ""), "`URL` of an S3-compatible store, addressed path-style; empty is AWS [S3_ENDPOINT]")
	fs.StringVar(&c.s3.Prefix, "s3-prefix", env("S3_PREFIX", ""), "`prefix` of every key in the bucket, e.g. nixery/ [S3_PREFIX]")
	fs.StringVar(&c.s3.Region, "s3-region", env("AWS_REGION", ""), "the bucket's `region` (us-east-1 for an endpoint when unset) [AWS_REGION]")
	fs.StringVar(&c.gcs.Bucket, "gcs-bucket", env("GCS_BUCKET", ""), "Google Cloud Storage `bucket` of the gcs backend [GCS_BUCKET]")
	fs.StringVar(&c.gcs.Prefix, "gcs-prefix", env("GCS_PREFIX", ""), "`prefix` of every object name in the GCS bucket, e.g. nixery/ [GCS_PREFIX]")
	fs.StringVar(&c.gcs.CredentialsFile, "gcs-credentials", env("GOOGLE_APPLICATION_CREDENTIALS", ""), "Google credentials JSON `file` (a service account key also signs redirect URLs); empty uses the application default credentials [GOOGLE_APPLICATION_CREDENTIALS]")
	fs.StringVar(&c.gcs.EmulatorHost, "gcs-emulator-host", env("STORAGE_EMULATOR_HOST", ""), "`host:port` of a GCS emulator such as fake-gcs-server, spoken to without credentials [STORAGE_EMULATOR_HOST]")
	fs.StringVar(&c.storagePath, "storage-path", env("STORAGE_PATH", ""), "`dir` for blobs, caches and the image index [STORAGE_PATH] (default: nixery in the user cache directory)")
	fs.StringVar(&c.popularity, "popularity", env("NIX_POPULARITY_URL", ""), "popularity JSON for layer grouping: a file `path` or http(s) URL [NIX_POPULARITY_URL]")
	maxBuilds := fs.String("max-builds", env("NIXERY_MAX_BUILDS", strconv.Itoa(nix.DefaultMaxConcurrent)), "bound on concurrent Nix builds [NIXERY_MAX_BUILDS]")
	maxLayers := fs.String("max-layers", env("NIXERY_MAX_LAYERS", strconv.Itoa(images.DefaultMaxLayers)), "bound on the layers of an image, customisation layer included [NIXERY_MAX_LAYERS]")
	return func() error {
		var err error
		if c.nixTimeout, err = parseTimeout(*timeout); err != nil {
			return err
		}
		if c.maxBuilds, err = strconv.Atoi(*maxBuilds); err != nil || c.maxBuilds < 1 {
			return fmt.Errorf("NIXERY_MAX_BUILDS / -max-builds %q: want a positive integer", *maxBuilds)
		}
		if c.maxLayers, err = strconv.Atoi(*maxLayers); err != nil || c.maxLayers < 2 || c.maxLayers > 125 {
			return fmt.Errorf("NIXERY_MAX_LAYERS / -max-layers %q: want an integer from 2 to 125 (Docker's limit)", *maxLayers)
		}
		switch c.storageBackend {
		case "filesystem":
		case "s3":
			if c.s3.Bucket == "" {
				return fmt.Errorf("NIXERY_STORAGE_BACKEND=s3 needs a bucket: set S3_BUCKET / -s3-bucket")
			}
			if c.s3.Endpoint != "" {
				if u, err := url.Parse(c.s3.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("S3_ENDPOINT / -s3-endpoint %q: want an http(s) URL such as http://127.0.0.1:8333", c.s3.Endpoint)
				}
			}
		case "gcs":
			if c.gcs.Bucket == "" {
				return fmt.Errorf("NIXERY_STORAGE_BACKEND=gcs needs a bucket: set GCS_BUCKET / -gcs-bucket")
			}
		default:
			return fmt.Errorf("storage backend %q is not supported: want filesystem (with STORAGE_PATH), s3 (with S3_BUCKET) or gcs (with GCS_BUCKET)", c.storageBackend)
		}
		return nil
	}
}

// parseStorage reads the garbage collection and scrub settings.
func (c *config) parseStorage(limit, retention, scrub, nixGC string) error {
	var err error
	if c.storageLimit, err = parseBytes(limit); err != nil {
		return fmt.Errorf("serve: NIXERY_STORAGE_LIMIT / -storage-limit %q: %w", limit, err)
	}
	if c.retention, err = time.ParseDuration(retention); err != nil || c.retention < 0 {
		return fmt.Errorf("serve: NIXERY_RETENTION / -retention %q: want a Go duration such as 720h, or 0", retention)
	}
	if c.scrubRate, err = parseBytes(scrub); err != nil {
		return fmt.Errorf("serve: NIXERY_SCRUB_RATE / -scrub-rate %q: %w", scrub, err)
	}
	if c.scrubRate == 0 {
		c.scrubRate = -1 // off
	}
	if c.nixGC, err = strconv.ParseBool(nixGC); err != nil {
		return fmt.Errorf("serve: NIXERY_NIX_GC / -nix-gc %q: want true or false", nixGC)
	}
	return nil
}

// byteUnits are the units parseBytes knows: SI (kB, MB, GB, TB: powers of
// 1000) and binary (KiB, MiB, GiB, TiB: powers of 1024), case-insensitive.
var byteUnits = []struct {
	suffix string
	n      float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

// parseBytes reads a size such as 2GB, 500MB, 1.5GiB or 1000 (bytes).
func parseBytes(s string) (int64, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), 1.0
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.n
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || v*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("want a size such as 2GB, 500MB or 1GiB")
	}
	return int64(v * mult), nil
}

// formatBytes writes n as parseBytes reads it, in the largest SI unit
// that divides it.
func formatBytes(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}} {
		if n != 0 && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
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
		nixery.WithStorageLimit(c.storageLimit),
		nixery.WithRetention(c.retention),
		nixery.WithScrubRate(c.scrubRate),
		nixery.WithNixGC(c.nixGC),
		nixery.WithBlobRedirect(c.blobRedirect),
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
