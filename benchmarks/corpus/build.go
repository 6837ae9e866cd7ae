package corpus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nixery-go/nixery/closure"
)

// QuickRoots are the Debian packages whose closure makes up the quick
// corpus, in priority order: [Build] in quick mode adds them one by one
// (skipping those not installed) as long as the closure stays within
// [QuickMaxPackages] packages.
var QuickRoots = []string{
	"bash", "coreutils", "nano", "less", "jq", "moreutils", "curl",
	"gzip", "xz-utils", "bzip2", "zstd", "sed", "grep", "findutils",
	"diffutils", "file", "procps", "tree", "patch", "make", "pigz",
	"wget", "ca-certificates", "netbase", "openssl",
}

// QuickMaxPackages bounds the size of the quick corpus.
const QuickMaxPackages = 45

// Options configure [Build].
type Options struct {
	// Quick builds a deterministic subset, the closure of [QuickRoots],
	// instead of every installed package.
	Quick bool
	// Roots, when set, selects the closure of these Debian packages
	// instead of the full or quick set.
	Roots []string
	// WorkDir receives the generated Nix files and the GC root (the
	// symlink "result"); it becomes [Corpus.PkgsPath]. Required. Use
	// separate directories for corpora of different modes; two Builds
	// must not share a directory at the same time.
	WorkDir string
	// DpkgDir is the dpkg database; empty means /var/lib/dpkg.
	DpkgDir string
	// Root is the directory the paths in the dpkg file lists are relative
	// to; empty means "/".
	Root string
	// MaxJobs is passed to nix-build as --max-jobs; 0 means 2.
	MaxJobs int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Corpus is a built package set.
type Corpus struct {
	// PkgsPath is a directory holding default.nix, usable as nixery's
	// NIXERY_PKGS_PATH. The set accepts `{ system ? ..., ... }`.
	PkgsPath string
	// Graph is the runtime graph of every package in the set: one store
	// path per attribute of [Corpus.Packages], with the references Nix
	// recorded.
	Graph *closure.Graph
	// Packages maps each attribute (one per Debian package, plus
	// [AttrCacert] and [AttrIanaEtc]; aliases excluded) to its store path.
	Packages map[string]string
	// Aliases maps the alias attributes of [ShellAliases] that the set
	// defines to the attribute they stand for.
	Aliases map[string]string
	// Debian maps each Debian package attribute to the Debian package name.
	Debian map[string]string
	// Popularity is [closure.Compute] of Graph: the set's own popularity.
	Popularity closure.Popularity
	// Dropped lists the dependency edges removed to break cycles (see
	// [Resolve]), among the selected packages.
	Dropped []Edge
	// Bytes is the total NAR size of Graph.
	Bytes int64
	// BuildTime is how long generating and building took.
	BuildTime time.Duration
}

// Attrs returns the attributes of [Corpus.Packages], sorted.
func (c *Corpus) Attrs() []string {
	out := make([]string, 0, len(c.Packages))
	for a := range c.Packages {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// nixConfig is what the generator needs from Nix on a single-user, offline
// machine. A NIX_CONFIG already in the environment is appended after it, so
// the caller's settings win.
const nixConfig = "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command\n"

// Build reads the dpkg database, generates the Nix package set in
// opts.WorkDir, realises it with nix-build and reads back its runtime graph
// with `nix path-info --json --recursive`. Running it again reuses the
// store paths: the generated files are deterministic, so Nix finds every
// output already valid.
func Build(ctx context.Context, opts Options) (*Corpus, error) {
	start := time.Now()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.WorkDir == "" {
		return nil, errors.New("corpus: Options.WorkDir is required")
	}
	dir, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, err
	}
	dpkgDir := opts.DpkgDir
	if dpkgDir == "" {
		dpkgDir = "/var/lib/dpkg"
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, err
	}
	maxJobs := opts.MaxJobs
	if maxJobs <= 0 {
		maxJobs = 2
	}
	for _, tool := range []string{"nix-build", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("corpus: %s not found in PATH; install Nix (on Debian: apt-get install nix-bin): %w", tool, err)
		}
	}

	debs, err := ReadDatabase(dpkgDir)
	if err != nil {
		return nil, err
	}
	g := Resolve(debs)
	sel, err := selectPackages(g, opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	gen, aliases, err := generate(dir, root, g, sel)
	if err != nil {
		return nil, err
	}
	var estimate int64
	for _, p := range gen {
		estimate += p.byteSize
	}
	log.Info("corpus generated", "dir", dir, "packages", len(gen), "bytes", estimate,
		"dropped_edges", len(g.Dropped), "quick", opts.Quick)

	result := filepath.Join(dir, "result")
	out, err := runNix(ctx, "nix-build", filepath.Join(dir, "all.nix"), "--out-link", result,
		"--max-jobs", fmt.Sprint(maxJobs), "--quiet")
	if err != nil {
		return nil, err
	}
	index := strings.TrimSpace(string(out))
	data, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("corpus: reading the build index: %w", err)
	}
	var all map[string]string
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("corpus: parsing the build index %s: %w", index, err)
	}
	c := &Corpus{PkgsPath: dir, Packages: map[string]string{}, Aliases: aliases, Debian: map[string]string{}}
	for a, p := range all {
		if _, alias := aliases[a]; alias {
			continue
		}
		c.Packages[a] = p
	}
	for a, p := range gen {
		c.Debian[a] = p.debName
	}
	inSel := map[string]bool{}
	for _, n := range sel {
		inSel[n] = true
	}
	for _, e := range g.Dropped {
		if inSel[e.From] && inSel[e.To] {
			c.Dropped = append(c.Dropped, e)
		}
	}
	paths := make([]string, 0, len(c.Packages))
	for _, a := range c.Attrs() {
		paths = append(paths, c.Packages[a])
	}
	out, err = runNix(ctx, "nix", append([]string{"path-info", "--json", "--recursive"}, paths...)...)
	if err != nil {
		return nil, err
	}
	infos, err := closure.ParsePathInfo(out)
	if err != nil {
		return nil, err
	}
	if c.Graph, err = closure.New(infos, nil); err != nil {
		return nil, err
	}
	if c.Graph.Len() != len(c.Packages) {
		return nil, fmt.Errorf("corpus: graph has %d paths for %d packages", c.Graph.Len(), len(c.Packages))
	}
	for _, p := range c.Graph.Paths() {
		c.Bytes += p.NarSize
	}
	c.Popularity = closure.Compute(c.Graph)
	c.BuildTime = time.Since(start)
	log.Info("corpus built", "paths", c.Graph.Len(), "nar_bytes", c.Bytes, "duration", c.BuildTime)
	return c, nil
}

// selectPackages returns the sorted Debian names to build.
func selectPackages(g *DepGraph, opts Options) ([]string, error) {
	switch {
	case len(opts.Roots) > 0:
		return g.Closure(opts.Roots...)
	case opts.Quick:
		var roots, sel []string
		for _, r := range QuickRoots {
			if _, ok := g.Deps[r]; !ok {
				continue
			}
			c, err := g.Closure(append(roots, r)...)
			if err != nil {
				return nil, err
			}
			if len(c) > QuickMaxPackages {
				continue
			}
			roots, sel = append(roots, r), c
		}
		if len(sel) == 0 {
			return nil, errors.New("corpus: none of the quick roots is installed within the size bound")
		}
		return sel, nil
	default:
		names := make([]string, len(g.Packages))
		for i, p := range g.Packages {
			names[i] = p.Name
		}
		return names, nil
	}
}

// runNix runs a Nix command with the configuration the corpus needs and
// returns its standard output. A failure carries the tail of stderr.
func runNix(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "NIX_CONFIG="+nixConfig+os.Getenv("NIX_CONFIG"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tail := stderr.String()
		if len(tail) > 4000 {
			tail = "..." + tail[len(tail)-4000:]
		}
		return nil, fmt.Errorf("corpus: %s %s: %w\n%s", name, args[0], err, tail)
	}
	return stdout.Bytes(), nil
}
