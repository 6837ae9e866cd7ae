// Package sim is the layer-sharing simulation of the benchmark harness: it
// generates seeded sequences of images from a package set, lays each image
// out with every layering algorithm under comparison, and counts the bytes
// a client pulling the sequence downloads and a registry serving it stores.
//
// # Model
//
// An image is a set of top-level packages; its closure graph is the
// sub-graph of the package set's graph reachable from their store paths,
// plus cacert and iana-etc, which nixery adds to every image. A layer is
// identified by its exact set of store paths, as nixery's layer cache keys
// it, and its compressed size is the sum of the compressed sizes of its
// store paths plus a fixed per-layer overhead (see [Sizes]): nixery's layer
// format concatenates the gzip members of each store path between a header
// and a trailer member, so with sizes measured by the layers package (each
// path compressed once, memoised) this is exactly the size nixery serves.
//
// A client pulls the images in order and downloads each layer it does not
// hold yet: those are the pull bytes. The ideal is every unique store path
// of the sequence downloaded once. The registry stores every unique layer
// of every workload once: registry bytes, against the unique store paths of
// all workloads together. The customisation layer (the image's symlink
// forest) is the same for every algorithm and is left out.
//
// # Worked example
//
// Two images, {curl} then {git}, where both use openssl and glibc. With
// one layer per image the client downloads curl's whole closure and then
// git's whole closure, glibc and openssl twice. With a layer per store path
// it downloads glibc and openssl once, which is the ideal.
package sim

import (
	"fmt"
	"sort"

	"github.com/nixery-go/nixery/closure"
)

// Universe is a package set to draw images from.
type Universe struct {
	// Name says where the set comes from, for reports.
	Name string
	// Graph is the runtime graph of the whole set.
	Graph *closure.Graph
	// Popularity is the set's own popularity ([closure.Compute] of Graph).
	Popularity closure.Popularity
	// Packages maps each attribute to its store path.
	Packages map[string]string
	// Shell lists the attributes of nixery's `shell` meta-package that the
	// set has (bashInteractive, coreutils, moreutils, nano).
	Shell []string
	// Always lists the attributes nixery adds to every image (cacert,
	// iana-etc) that the set has.
	Always []string
	// ClosureSizes, optional, maps store paths to their closure NAR size
	// ([closure.Graph.ClosureSize]), precomputed for large sets.
	ClosureSizes map[string]int64
}

// Validate checks that every attribute names a path of the graph.
func (u *Universe) Validate() error {
	if u.Graph == nil || u.Graph.Len() == 0 {
		return fmt.Errorf("sim: universe %q has no graph", u.Name)
	}
	for a, p := range u.Packages {
		if _, ok := u.Graph.Lookup(p); !ok {
			return fmt.Errorf("sim: universe %q: package %s has store path %s outside the graph", u.Name, a, p)
		}
	}
	for _, a := range append(append([]string(nil), u.Shell...), u.Always...) {
		if _, ok := u.Packages[a]; !ok {
			return fmt.Errorf("sim: universe %q: no package %s", u.Name, a)
		}
	}
	return nil
}

// Image is one image of a workload: the packages asked for.
type Image struct {
	// Packages are the top-level attributes, sorted, without the
	// always-added ones.
	Packages []string
	// Shell reports whether the image asked for the `shell` meta-package
	// (its members are in Packages too).
	Shell bool
}

// Name returns the image name as a nixery client would write it.
func (im Image) Name() string {
	name := ""
	if im.Shell {
		name = "shell"
	}
	for _, p := range im.Packages {
		if im.Shell && isShellMember(p) {
			continue
		}
		if name != "" {
			name += "/"
		}
		name += p
	}
	return name
}

func isShellMember(a string) bool {
	switch a {
	case "bashInteractive", "coreutils", "moreutils", "nano":
		return true
	}
	return false
}

// Closure returns the closure graph of the image: its packages and the
// always-added ones, with those store paths as roots.
func (u *Universe) Closure(im Image) (*closure.Graph, error) {
	seen := map[string]bool{}
	var roots []string
	for _, a := range append(append([]string(nil), im.Packages...), u.Always...) {
		p, ok := u.Packages[a]
		if !ok {
			return nil, fmt.Errorf("sim: unknown package %q", a)
		}
		if !seen[p] {
			seen[p] = true
			roots = append(roots, p)
		}
	}
	sort.Strings(roots)
	return u.Graph.Subgraph(roots...)
}
