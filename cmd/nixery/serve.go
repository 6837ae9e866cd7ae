package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/layers/gcsstore"
	"github.com/nixery-go/nixery/layers/s3store"
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
localhost:8080, keeping everything under the user's cache directory.

`

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
	// a background writer batches them (see LogBuffer).
	logOut := NewLogBuffer(stderr)
	defer logOut.Close()
	newHandler := func(w io.Writer) slog.Handler {
		if c.logFormat == "json" {
			return slog.NewJSONHandler(w, nil)
		}
		return slog.NewTextHandler(w, nil)
	}
	handler := newHandler(logOut)
	log := slog.New(handler)

	// What the library logs while it starts (the popularity may be ready
	// at once) waits until the first line has said what is served where.
	held := &heldWriter{w: logOut}
	opts, err := c.storeOptions(ctx)
	if err != nil {
		return err
	}
	srv, err := nixery.New(ctx, append(opts, nixery.WithLogger(slog.New(newHandler(held))))...)
	if err != nil {
		held.release()
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		held.release()
		return err
	}
	addr := ln.Addr().String()
	log.Info("nixery serving "+srv.Source().String(),
		"addr", addr,
		"url", "http://"+addr+"/v2/",
		"storage", srv.Storage(),
		"nix_timeout", c.nixTimeout,
		"max_builds", c.maxBuilds,
		"max_queue", c.maxQueue,
		"max_client_builds", c.maxClient,
		"max_conns", c.maxConns,
		"write_timeout", c.writeTimeout,
		"max_layers", c.maxLayers)
	held.release()
	if c.debugAddr != "" {
		stop, err := serveDebug(c.debugAddr, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
	}

	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    c.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}
	ln = serveListen(ln, c.maxConns)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
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
	srv.Close() // cancels builds in progress, so waiting requests end
	if err := hs.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// serveDebug serves Go's profiling endpoints (/debug/pprof/, whose
// goroutine profile counts the goroutines) on addr until stop.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve: debug address: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ds := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go ds.Serve(ln)
	log.Info("debug endpoints", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { ds.Close() }, nil
}

// heldWriter keeps what is written to it until release, then writes it to
// w and passes later writes straight on.
type heldWriter struct {
	w        io.Writer
	released atomic.Bool // read without mu on the hot path
	mu       sync.Mutex
	held     []byte
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if h.released.Load() {
		return h.w.Write(p)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released.Load() {
		return h.w.Write(p)
	}
	h.held = append(h.held, p...)
	return len(p), nil
}

func (h *heldWriter) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.released.Load() {
		h.w.Write(h.held)
		h.held = nil
		h.released.Store(true)
	}
}

// storeOptions are the library's options with the configured blob store
// opened: the filesystem under STORAGE_PATH, or the s3 or gcs backend's
// bucket.
func (c *config) storeOptions(ctx context.Context) ([]nixery.Option, error) {
	opts := c.options()
	switch c.storageBackend {
	case "s3":
		store, err := s3store.New(ctx, c.s3)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nixery.WithBlobStore(store))
	case "gcs":
		o := c.gcs
		o.SignURLs = c.blobRedirect > 0
		store, err := gcsstore.New(ctx, o)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nixery.WithBlobStore(store))
	}
	return opts, nil
}
