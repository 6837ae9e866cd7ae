package nix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// PackageInfo is one top-level package of a package set.
type PackageInfo struct {
	// Attr is its attribute name, e.g. "curl".
	Attr string `json:"attr"`
	// Version is the derivation's version attribute, "" if it has none.
	Version string `json:"version"`
}

// ErrNotListable is returned by [Builder.Packages] for a source whose
// packages cannot be listed (a channel or a git repository: nixpkgs is too
// large to evaluate whole).
var ErrNotListable = errors.New("nix: this package source cannot be listed")

const versionsExpr = `{ dir, system }:
let s = import (/. + dir) { inherit system; };
    isDrv = n: (builtins.tryEval ((s.${n}.type or "") == "derivation")).value;
in map (n: { attr = n; version = let v = builtins.tryEval (s.${n}.version or ""); in if v.success then v.value else ""; })
  (builtins.filter isDrv (builtins.attrNames s))`

// listingState caches a Builder's listing.
type listingState struct {
	mu   sync.Mutex
	key  string
	pkgs []PackageInfo
}

// Packages lists the top-level packages of the source's default tag with
// their versions, sorted by attribute, as the popularity of a listable set
// is computed (one nix-instantiate, no build). It works for the sources
// whose Import is a path (the bundled set, a local tree) and returns
// [ErrNotListable] for others. The answer is kept for the source's cache
// key.
func (b *Builder) Packages(ctx context.Context) ([]PackageInfo, error) {
	key, _, err := b.src.CacheKey("latest")
	if err != nil {
		return nil, err
	}
	s := &b.listing
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pkgs != nil && s.key == key {
		return s.pkgs, nil
	}
	imp, err := b.src.Import("latest")
	if err != nil {
		return nil, err
	}
	if imp.Kind != "path" {
		return nil, ErrNotListable
	}
	ctx, cancel := context.WithTimeoutCause(ctx, b.opts.Timeout, ErrTimeout)
	defer cancel()
	out, err := b.run(ctx, command{
		op:   "evaluate",
		prog: "nix-instantiate",
		args: []string{"--eval", "--json", "--strict", "--argstr", "dir", imp.Path, "--argstr", "system", DefaultSystem, "--expr", versionsExpr},
	})
	if err != nil {
		return nil, fmt.Errorf("nix: listing the %s: %w", b.src, err)
	}
	var pkgs []PackageInfo
	if err := json.Unmarshal(out.stdout, &pkgs); err != nil {
		return nil, fmt.Errorf("nix: listing the %s: unexpected output %.200q", b.src, out.stdout)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Attr < pkgs[j].Attr })
	if pkgs == nil {
		pkgs = []PackageInfo{}
	}
	s.key, s.pkgs = key, pkgs
	return pkgs, nil
}

// PopularityReady reports whether the popularity is known (computed or
// read), without waiting for it: builds wait for it until then.
func (b *Builder) PopularityReady() bool {
	b.pop.mu.Lock()
	defer b.pop.mu.Unlock()
	return b.pop.val != nil
}

// CheckNix reports whether the Nix programs the Builder runs are
// installed: nil, or an error wrapping [ErrNixNotFound].
func (b *Builder) CheckNix() error {
	for _, prog := range []string{"nix-instantiate", "nix-store", "nix"} {
		if _, err := lookNix(b.opts.NixDir, prog); err != nil {
			return err
		}
	}
	return nil
}
