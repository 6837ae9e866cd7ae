package sim

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed" // the archive snapshot
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nixery-go/nixery/closure"
)

//go:generate go run ../cmd/archivecorpus -o testdata/debian-bookworm-amd64.tsv.gz

// ArchiveFile is the committed snapshot of Debian bookworm's amd64 main
// archive index, condensed to an acyclic graph: see [Archive].
const ArchiveFile = "testdata/debian-bookworm-amd64.tsv.gz"

//go:embed testdata/debian-bookworm-amd64.tsv.gz
var archiveSnapshot []byte

// ArchiveOverhead is the per-layer overhead of the archive universe: the
// framing of nixery's layer format as the harness measured it on its corpus
// (a header and a trailer gzip member).
const ArchiveOverhead = 125

// Archive returns the second, large corpus of the simulation: every binary
// package of Debian bookworm's amd64 main archive (about 63,000), with
// dependency cycles condensed into one node each (see corpus.CondenseArchive
// and the generator, benchmarks/cmd/archivecorpus). A node's NAR size is
// its packages' Installed-Size and its compressed size (in the returned
// Sizes) the size of their .deb files: the archive's real compressed sizes,
// downloading nothing. nixery's shell meta-package maps to bash, coreutils,
// moreutils and nano, cacert to ca-certificates and iana-etc to netbase.
// The snapshot is embedded, so results do not depend on the machine's apt
// lists.
func Archive() (*Universe, Sizes, error) {
	return ReadArchive(bytes.NewReader(archiveSnapshot))
}

// ReadArchive reads a gzipped archive snapshot as written by
// corpus.WriteArchiveTSV: lines of name, version, size, installed size,
// other members and dependencies, "#" lines being comments.
func ReadArchive(r io.Reader) (*Universe, Sizes, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, Sizes{}, fmt.Errorf("sim: archive snapshot: %w", err)
	}
	defer zr.Close()
	type node struct {
		name, path string
		size, inst int64
		deps       []string
	}
	var nodes []node
	pathOf := map[string]string{}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	line, members := 0, 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" || text[0] == '#' {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) != 6 {
			return nil, Sizes{}, fmt.Errorf("sim: archive snapshot line %d: %d fields, want 6", line, len(f))
		}
		size, err1 := strconv.ParseInt(f[2], 10, 64)
		inst, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || size < 0 || inst < 0 {
			return nil, Sizes{}, fmt.Errorf("sim: archive snapshot line %d: bad sizes", line)
		}
		nd := node{name: f[0], size: size, inst: inst}
		members++
		if f[4] != "-" {
			members += strings.Count(f[4], ",") + 1
		}
		if f[5] != "-" {
			nd.deps = strings.Split(f[5], ",")
		}
		nd.path = SyntheticStorePath(0, f[0]+"-"+storeVersion(f[1]))
		if !closure.ValidStorePath(nd.path) {
			return nil, Sizes{}, fmt.Errorf("sim: archive snapshot line %d: bad name %q", line, f[0])
		}
		if _, dup := pathOf[nd.name]; dup {
			return nil, Sizes{}, fmt.Errorf("sim: archive snapshot line %d: %s twice", line, nd.name)
		}
		pathOf[nd.name] = nd.path
		nodes = append(nodes, nd)
	}
	if err := sc.Err(); err != nil {
		return nil, Sizes{}, fmt.Errorf("sim: archive snapshot: %w", err)
	}
	paths := make([]closure.Path, len(nodes))
	sizes := Sizes{Paths: make(map[string]int64, len(nodes)), Overhead: ArchiveOverhead}
	u := &Universe{Packages: make(map[string]string, len(nodes))}
	for i, nd := range nodes {
		paths[i] = closure.Path{Path: nd.path, NarSize: max(nd.inst, nd.size)}
		for _, d := range nd.deps {
			p, ok := pathOf[d]
			if !ok {
				return nil, Sizes{}, fmt.Errorf("sim: archive snapshot: %s depends on unknown %s", nd.name, d)
			}
			paths[i].References = append(paths[i].References, p)
		}
		sizes.Paths[nd.path] = nd.size
		u.Packages[nd.name] = nd.path
	}
	g, err := closure.New(paths, nil)
	if err != nil {
		return nil, Sizes{}, fmt.Errorf("sim: archive snapshot: %w", err)
	}
	u.Graph = g
	u.Name = fmt.Sprintf("Debian bookworm amd64 archive (%d packages as %d acyclic nodes)", members, len(nodes))
	for alias, deb := range map[string]string{"bashInteractive": "bash", "coreutils": "coreutils", "moreutils": "moreutils", "nano": "nano", "cacert": "ca-certificates", "iana-etc": "netbase"} {
		p, ok := u.Packages[deb]
		if !ok {
			continue
		}
		delete(u.Packages, deb) // one name per store path
		u.Packages[alias] = p
	}
	for _, a := range []string{"bashInteractive", "coreutils", "moreutils", "nano"} {
		if _, ok := u.Packages[a]; ok {
			u.Shell = append(u.Shell, a)
		}
	}
	for _, a := range []string{"cacert", "iana-etc"} {
		if _, ok := u.Packages[a]; ok {
			u.Always = append(u.Always, a)
		}
	}
	u.Popularity, u.ClosureSizes = popularityAndClosures(g)
	return u, sizes, nil
}

// storeVersion maps a Debian version to characters a store path name
// allows (':' of the epoch and '~' become '_').
func storeVersion(v string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("+-._?=", r):
			return r
		}
		return '_'
	}, v)
}

// popularityAndClosures computes [closure.Compute]'s popularity (how many
// other paths have a path in their closure) and every path's closure NAR
// size, walking each closure once with a reused visited mark: linear in the
// sum of the closure sizes, where closure.Compute's bit sets would need
// n²/8 bytes (500 MB for the archive).
func popularityAndClosures(g *closure.Graph) (closure.Popularity, map[string]int64) {
	n := g.Len()
	mark := make([]int, n)
	for i := range mark {
		mark[i] = -1
	}
	counts := make([]int64, n)
	csize := make(map[string]int64, n)
	var stack []int
	ps := g.Paths()
	for i := 0; i < n; i++ {
		mark[i] = i
		stack = append(stack[:0], i)
		total := ps[i].NarSize
		for len(stack) > 0 {
			v := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, w := range g.Refs(v) {
				if mark[w] != i {
					mark[w] = i
					counts[w]++
					total += ps[w].NarSize
					stack = append(stack, w)
				}
			}
		}
		csize[ps[i].Path] = total
	}
	pop := make(closure.Popularity, n)
	for i, p := range ps {
		pop[closure.Name(p.Path)] += counts[i]
	}
	return pop, csize
}
