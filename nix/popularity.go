package nix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/atomicfile"
)

// Popularity is a package set's popularity (see [closure.Compute]) with
// what identifies it.
type Popularity struct {
	// Map is the popularity of each store path name; it may be empty.
	Map closure.Popularity
	// Fingerprint is the hex SHA-256 of Map's JSON encoding (keys sorted).
	// Layers depend on the popularity, so whatever caches images must
	// include it in its keys.
	Fingerprint string
	// From says where the popularity came from, for logs.
	From string
}

// newPopularity fills in the fingerprint of m.
func newPopularity(m closure.Popularity, from string) (*Popularity, error) {
	if m == nil {
		m = closure.Popularity{}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &Popularity{Map: m, Fingerprint: hex.EncodeToString(sum[:]), From: from}, nil
}

// popularityRetry is how long a failed popularity computation is reported
// before it is tried again.
const popularityRetry = time.Minute

// maxPopularityBytes bounds a popularity file (nixpkgs' is about 10 MB).
const maxPopularityBytes = 256 << 20

// popularityState is a Builder's popularity, computed once.
type popularityState struct {
	mu     sync.Mutex
	done   chan struct{} // closed when the current computation ends
	val    *Popularity
	err    error
	failed time.Time
}

// Popularity returns the popularity of the builder's package set, from the
// first of:
//
//  1. [Options.PopularityURL], in upstream Nixery's JSON format;
//  2. for a source whose Import is Listable (the bundled set), the set
//     itself: every top-level package is realised and [closure.Compute]
//     counts, for each store path, the paths of the whole set that depend
//     on it, as upstream Nixery computes nixpkgs'. The result is kept in
//     [Options.PopularityDir] and in [Options.SharedPopularity] with a
//     checksum and checked when read, and taken from the first of them
//     that has it; a damaged copy is computed again, never trusted;
//  3. otherwise an empty map: every path counts 0, and layers follow the
//     shape of each image's graph alone.
//
// It is computed once per Builder, by the first call, which owns the
// computation: later calls wait for it until their own context ends. If
// the first caller's context ends, the computation stops and the next call
// starts it again; a server starts it with its own lifetime's context. A
// failure is returned to every caller for a minute, then computed again.
func (b *Builder) Popularity(ctx context.Context) (*Popularity, error) {
	s := &b.pop
	s.mu.Lock()
	if s.val != nil {
		v := s.val
		s.mu.Unlock()
		return v, nil
	}
	if s.done == nil || (s.err != nil && time.Since(s.failed) > popularityRetry) {
		done := make(chan struct{})
		s.done, s.err = done, nil
		go func() {
			v, err := b.computePopularity(ctx)
			s.mu.Lock()
			s.val, s.err = v, err
			switch {
			case err == nil:
				b.opts.Logger.Info("popularity ready", "source", b.src.String(), "from", v.From, "paths", len(v.Map), "fingerprint", v.Fingerprint[:12])
			case ctx.Err() != nil:
				s.done = nil // the owner left: the next call starts again
			default:
				s.failed = time.Now()
				b.opts.Logger.Error("cannot get the package set's popularity", "source", b.src.String(), "error", err)
			}
			s.mu.Unlock()
			close(done)
		}()
	}
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.val != nil {
		return s.val, nil
	}
	return nil, s.err
}

func (b *Builder) computePopularity(ctx context.Context) (*Popularity, error) {
	if u := b.opts.PopularityURL; u != "" {
		m, err := loadPopularity(ctx, u)
		if err != nil {
			return nil, err
		}
		return newPopularity(m, u)
	}
	imp, err := b.src.Import("latest")
	if err != nil {
		return nil, err
	}
	if !imp.Listable {
		return newPopularity(nil, "none (grouping by graph shape)")
	}
	key, _, err := b.src.CacheKey("latest")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:16]) + ".json"
	file := ""
	if b.opts.PopularityDir != "" {
		file = filepath.Join(b.opts.PopularityDir, name)
		if p, err := readPopularityFile(file, key); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			b.opts.Logger.Warn("recomputing a damaged popularity file", "file", file, "error", err)
		}
	}
	shared := b.opts.SharedPopularity
	if shared != nil {
		data, err := shared.GetPopularity(ctx, name)
		if err == nil {
			var p *Popularity
			if p, err = parsePopularityFile(data, key, "computed from the package set (shared: "+name+")"); err == nil {
				if file != "" {
					if err := writePopularityFile(file, key, p); err != nil {
						b.opts.Logger.Warn("cannot keep the shared popularity", "file", file, "error", err)
					}
				}
				return p, nil
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			b.opts.Logger.Warn("recomputing the shared popularity", "name", name, "error", err)
		}
	}
	m, err := b.computeFromSet(ctx, imp)
	if err != nil {
		return nil, err
	}
	p, err := newPopularity(m, "computed from the whole "+b.src.String())
	if err != nil {
		return nil, err
	}
	if file != "" {
		if err := writePopularityFile(file, key, p); err != nil {
			b.opts.Logger.Warn("cannot keep the computed popularity", "file", file, "error", err)
		}
	}
	if shared != nil {
		if data, err := encodePopularityFile(key, p); err == nil {
			err = shared.PutPopularity(ctx, name, data)
			if err != nil {
				b.opts.Logger.Warn("cannot share the computed popularity", "name", name, "error", err)
			}
		}
	}
	return p, nil
}

// SharedPopularity keeps computed popularities where several servers see
// them (see [Options.SharedPopularity]); cmd/nixery adapts an object
// store's state objects to it.
type SharedPopularity interface {
	// GetPopularity returns what PutPopularity stored under name, or an
	// error matching fs.ErrNotExist.
	GetPopularity(ctx context.Context, name string) ([]byte, error)
	// PutPopularity stores data under name.
	PutPopularity(ctx context.Context, name string, data []byte) error
}

// popularityFile is the on-disk form of a computed popularity: the source
// it belongs to and the fingerprint of the map, checked on every read.
type popularityFile struct {
	Source      string             `json:"source"`
	Fingerprint string             `json:"sha256"`
	Popularity  closure.Popularity `json:"popularity"`
}

func readPopularityFile(file, key string) (*Popularity, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, err := parsePopularityFile(data, key, "computed from the package set (cached in "+file+")")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// parsePopularityFile checks a popularity file's source and checksum.
func parsePopularityFile(data []byte, key, from string) (*Popularity, error) {
	var pf popularityFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return nil, err
	}
	if pf.Source != key {
		return nil, fmt.Errorf("for source %q, not %q", pf.Source, key)
	}
	p, err := newPopularity(pf.Popularity, from)
	if err != nil {
		return nil, err
	}
	if p.Fingerprint != pf.Fingerprint || len(p.Map) == 0 {
		return nil, errors.New("checksum mismatch")
	}
	return p, nil
}

func encodePopularityFile(key string, p *Popularity) ([]byte, error) {
	return json.Marshal(popularityFile{Source: key, Fingerprint: p.Fingerprint, Popularity: p.Map})
}

func writePopularityFile(file, key string, p *Popularity) error {
	data, err := encodePopularityFile(key, p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	atomicfile.RemoveStale(filepath.Dir(file), atomicfile.TempPrefix) // a killed writer's
	return atomicfile.Write(file, data)
}

// listExpr lists the top-level attributes of a package set that are
// derivations. The directory arrives as a string argument (--argstr),
// never as code.
const listExpr = `{ dir, system }:
let s = import (/. + dir) { inherit system; };
in builtins.filter (n: (builtins.tryEval ((s.${n}.type or "") == "derivation")).value) (builtins.attrNames s)`

// computeFromSet realises every top-level package of a listable set and
// computes the popularity of its graph. It gets ten times the Nix timeout,
// since on a fresh machine it builds the whole set.
func (b *Builder) computeFromSet(ctx context.Context, imp Import) (closure.Popularity, error) {
	if imp.Kind != "path" {
		return nil, fmt.Errorf("nix: cannot list a package set of kind %q", imp.Kind)
	}
	listCtx, cancel := context.WithTimeoutCause(ctx, b.opts.Timeout, ErrTimeout)
	out, err := b.run(listCtx, command{
		op:   "evaluate",
		prog: "nix-instantiate",
		args: []string{"--eval", "--json", "--strict", "--argstr", "dir", imp.Path, "--argstr", "system", DefaultSystem, "--expr", listExpr},
	})
	cancel()
	if err != nil {
		if errors.Is(context.Cause(listCtx), ErrTimeout) {
			err = fmt.Errorf("%w after %s", ErrTimeout, b.opts.Timeout)
		}
		return nil, fmt.Errorf("nix: listing the %s: %w", b.src, err)
	}
	var names []string
	if err := json.Unmarshal(out.stdout, &names); err != nil || len(names) == 0 {
		return nil, fmt.Errorf("nix: listing the %s: unexpected output %.200q", b.src, out.stdout)
	}
	b.opts.Logger.Info("computing the package set's popularity", "source", b.src.String(), "packages", len(names))
	res, err := b.buildWithin(ctx, Request{Packages: names, System: DefaultSystem}, 10*b.opts.Timeout)
	if err != nil {
		return nil, err
	}
	res.Release()
	return closure.Compute(res.Graph), nil
}

// loadPopularity reads a popularity file from an http(s) URL or a file path
// (file:// too).
func loadPopularity(ctx context.Context, from string) (closure.Popularity, error) {
	var r io.ReadCloser
	if strings.HasPrefix(from, "http://") || strings.HasPrefix(from, "https://") {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, from, nil)
		if err != nil {
			return nil, fmt.Errorf("nix: popularity: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("nix: popularity: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("nix: popularity: GET %s: %s", from, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(strings.TrimPrefix(from, "file://"))
		if err != nil {
			return nil, fmt.Errorf("nix: popularity: %w", err)
		}
		r = f
	}
	defer r.Close()
	pop, err := closure.LoadPopularity(io.LimitReader(r, maxPopularityBytes))
	if err != nil {
		return nil, fmt.Errorf("nix: popularity from %s: %w", from, err)
	}
	return pop, nil
}
