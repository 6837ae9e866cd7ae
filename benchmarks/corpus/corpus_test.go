package corpus

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
)

func readFixture(t *testing.T) []DebPackage {
	t.Helper()
	pkgs, err := ReadDatabase("testdata/dpkg")
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestReadDatabase(t *testing.T) {
	pkgs := readFixture(t)
	var names []string
	byName := map[string]DebPackage{}
	for _, p := range pkgs {
		names = append(names, p.Name)
		byName[p.Name] = p
	}
	want := []string{"base-files", "bash", "gcc-12-base", "libc6", "libgcc-s1", "libtinfo6", "mawk", "tool++"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("installed packages = %v, want %v (old-tool has only config files)", names, want)
	}
	bash := byName["bash"]
	if bash.Version != "5.2.15-2+b8" || bash.Arch != "amd64" || bash.InstalledSize != 7164*1024 {
		t.Errorf("bash = %+v", bash)
	}
	// Pre-Depends come first, then Depends; versions are dropped.
	wantDeps := [][]string{{"libc6"}, {"not-installed", "base-files"}, {"libtinfo6"}}
	if !reflect.DeepEqual(bash.Depends, wantDeps) {
		t.Errorf("bash.Depends = %v, want %v", bash.Depends, wantDeps)
	}
	wantFiles := []string{"/bin", "/bin/bash", "/usr", "/usr/share", "/usr/share/doc", "/usr/share/doc/bash", "/usr/share/doc/bash/README"}
	if !reflect.DeepEqual(bash.Files, wantFiles) {
		t.Errorf("bash.Files = %v, want %v", bash.Files, wantFiles)
	}
	tool := byName["tool++"]
	wantTool := [][]string{{"awk"}, {"missing-pkg"}, {"old-tool"}, {"bash"}, {"tool++"}}
	if !reflect.DeepEqual(tool.Depends, wantTool) {
		t.Errorf("tool++.Depends = %v, want %v", tool.Depends, wantTool)
	}
	if !reflect.DeepEqual(byName["mawk"].Provides, []string{"awk"}) {
		t.Errorf("mawk.Provides = %v", byName["mawk"].Provides)
	}
	// The list of a Multi-Arch: same package is info/<name>:<arch>.list.
	if got := byName["libc6"].Files; len(got) != 5 {
		t.Errorf("libc6.Files = %v", got)
	}
}

func TestResolve(t *testing.T) {
	g := Resolve(readFixture(t))
	want := map[string][]string{
		"base-files":  {"mawk"},                             // awk through Provides
		"bash":        {"base-files", "libc6", "libtinfo6"}, // second alternative
		"gcc-12-base": {},
		"libc6":       {"libgcc-s1"},
		"libgcc-s1":   {"gcc-12-base"}, // libgcc-s1 -> libc6 closes a cycle
		"libtinfo6":   {"libc6"},
		"mawk":        {"libc6"},
		"tool++":      {"bash", "mawk"}, // missing-pkg, old-tool and itself ignored
	}
	if !reflect.DeepEqual(g.Deps, want) {
		t.Errorf("Deps =\n%v\nwant\n%v", g.Deps, want)
	}
	if want := []Edge{{"libgcc-s1", "libc6"}}; !reflect.DeepEqual(g.Dropped, want) {
		t.Errorf("Dropped = %v, want %v", g.Dropped, want)
	}
	c, err := g.Closure("bash")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"base-files", "bash", "gcc-12-base", "libc6", "libgcc-s1", "libtinfo6", "mawk"}; !reflect.DeepEqual(c, want) {
		t.Errorf("Closure(bash) = %v, want %v", c, want)
	}
	if _, err := g.Closure("nope"); err == nil {
		t.Error("Closure of an unknown package succeeded")
	}
}

func TestResolveCycles(t *testing.T) {
	pkg := func(name string, deps ...string) DebPackage {
		p := DebPackage{Name: name}
		for _, d := range deps {
			p.Depends = append(p.Depends, []string{d})
		}
		return p
	}
	// The package doc's example, given in scrambled order: a -> b -> c -> a,
	// plus a second cycle d <-> e reached from c.
	pkgs := []DebPackage{pkg("c", "a", "d"), pkg("e", "d"), pkg("a", "b"), pkg("d", "e"), pkg("b", "c")}
	g := Resolve(pkgs)
	want := []Edge{{"c", "a"}, {"e", "d"}}
	if !reflect.DeepEqual(g.Dropped, want) {
		t.Errorf("Dropped = %v, want %v", g.Dropped, want)
	}
	// What is left is acyclic: Kahn's algorithm consumes every node.
	indeg := map[string]int{}
	for n, ds := range g.Deps {
		indeg[n] += 0
		for _, d := range ds {
			indeg[d]++
		}
	}
	var ready []string
	for n, k := range indeg {
		if k == 0 {
			ready = append(ready, n)
		}
	}
	seen := 0
	for len(ready) > 0 {
		n := ready[0]
		ready = ready[1:]
		seen++
		for _, d := range g.Deps[n] {
			if indeg[d]--; indeg[d] == 0 {
				ready = append(ready, d)
			}
		}
	}
	if seen != len(pkgs) {
		t.Errorf("graph still has a cycle: %v", g.Deps)
	}
	// The same input in another order drops the same edges.
	rev := []DebPackage{pkgs[4], pkgs[3], pkgs[2], pkgs[1], pkgs[0]}
	if g2 := Resolve(rev); !reflect.DeepEqual(g2.Dropped, want) {
		t.Errorf("Dropped depends on input order: %v", g2.Dropped)
	}
}

func TestParseStatusErrors(t *testing.T) {
	for _, in := range []string{
		"Status: install ok installed\n\n",                              // no Package
		" continuation first\n",                                         // continuation without field
		"Package: a\nStatus: install ok installed\nInstalled-Size: x\n", // bad size
		"Package: a\nStatus: install ok installed\nDepends: B-Upper\n",  // bad name
		"Package: a\nStatus: install ok installed\nProvides: b | c\n",   // alternatives in Provides
		"Package: a\nno colon here\n",
	} {
		if _, err := ParseStatus(strings.NewReader(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseStatus(%q) error = %v, want ErrSyntax", in, err)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	seed, err := os.ReadFile("testdata/dpkg/status")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("Package: x1\nStatus: install ok installed\nDepends: a|b,c (>= 1)\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParseStatus(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !strings.Contains(err.Error(), "token too long") {
				t.Fatalf("error does not wrap ErrSyntax: %v", err)
			}
			return
		}
		for _, p := range pkgs {
			if p.Name == "" || p.InstalledSize < 0 {
				t.Fatalf("bad package %+v", p)
			}
			for _, g := range p.Depends {
				for _, d := range g {
					if !validDebName(d) {
						t.Fatalf("invalid dependency name %q", d)
					}
				}
			}
		}
	})
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"libstdc++6":      "libstdcPP6",
		"gir1.2-glib-2.0": "gir1_2-glib-2_0",
		"bash":            "bash",
		"0ad":             "0ad",
	} {
		if got := AttrName(in); got != want {
			t.Errorf("AttrName(%q) = %q, want %q", in, got, want)
		}
	}
	if got, want := storeName("tool++", "1:2.0~rc1"), "tool++-1_2.0_rc1"; got != want {
		t.Errorf("storeName = %q, want %q", got, want)
	}
	if !closure.ValidStorePath("/nix/store/00000000000000000000000000000000-" + storeName("x", "1:2~3 4")) {
		t.Error("storeName gives an invalid store path name")
	}
	if got, want := nixString(`a"b${c}\`), `"a\"b\${c}\\"`; got != want {
		t.Errorf("nixString = %s, want %s", got, want)
	}
}

func requireNix(t *testing.T) {
	t.Helper()
	testutil.RequireTools(t, "nix-build", "nix", "nix-instantiate")
}

// TestBuildFixture builds the fixture database with real Nix and checks
// the store paths, their contents and the references Nix recorded.
func TestBuildFixture(t *testing.T) {
	requireNix(t)
	ctx := context.Background()
	dir := t.TempDir()
	c, err := Build(ctx, Options{WorkDir: dir, DpkgDir: "testdata/dpkg", Root: "testdata/root"})
	if err != nil {
		t.Fatal(err)
	}
	wantAttrs := []string{"base-files", "bash", "cacert", "gcc-12-base", "iana-etc", "libc6", "libgcc-s1", "libtinfo6", "mawk", "toolPP"}
	if got := c.Attrs(); !reflect.DeepEqual(got, wantAttrs) {
		t.Fatalf("Attrs = %v, want %v", got, wantAttrs)
	}
	if want := map[string]string{"bashInteractive": "bash"}; !reflect.DeepEqual(c.Aliases, want) {
		t.Errorf("Aliases = %v, want %v", c.Aliases, want)
	}
	if c.Debian["toolPP"] != "tool++" {
		t.Errorf("Debian[toolPP] = %q", c.Debian["toolPP"])
	}
	if c.Graph.Len() != len(wantAttrs) {
		t.Fatalf("graph has %d paths", c.Graph.Len())
	}
	refs := func(attr string) []string {
		p, ok := c.Graph.Lookup(c.Packages[attr])
		if !ok {
			t.Fatalf("%s (%s) not in graph", attr, c.Packages[attr])
		}
		var out []string
		for _, r := range p.References {
			for a, sp := range c.Packages {
				if sp == r && r != p.Path {
					out = append(out, a)
				}
			}
		}
		return sortedCopy(out)
	}
	for attr, want := range map[string][]string{
		"bash":      {"base-files", "libc6", "libtinfo6"},
		"libc6":     {"libgcc-s1"},
		"libgcc-s1": {"gcc-12-base"},
		"toolPP":    {"bash", "mawk"},
		"cacert":    nil,
		"iana-etc":  nil,
	} {
		if got := refs(attr); !reflect.DeepEqual(got, want) {
			t.Errorf("references of %s = %v, want %v", attr, got, want)
		}
	}
	if want := []Edge{{"libgcc-s1", "libc6"}}; !reflect.DeepEqual(c.Dropped, want) {
		t.Errorf("Dropped = %v, want %v", c.Dropped, want)
	}
	// Contents: merged-/usr symlinks kept, files at their real place,
	// listed-but-missing files skipped.
	bash := c.Packages["bash"]
	if got, err := os.Readlink(filepath.Join(bash, "bin")); err != nil || got != "usr/bin" {
		t.Errorf("bash/bin = %q, %v; want a symlink to usr/bin", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(bash, "bin/bash")); err != nil || string(got) != "#!/bin/sh\necho fixture bash\n" {
		t.Errorf("bash/bin/bash = %q, %v", got, err)
	}
	deps, err := os.ReadFile(filepath.Join(bash, "nix-support/propagated-deps"))
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Packages["base-files"] + "\n" + c.Packages["libc6"] + "\n" + c.Packages["libtinfo6"] + "\n"; string(deps) != want {
		t.Errorf("propagated-deps = %q, want %q", deps, want)
	}
	libc := c.Packages["libc6"]
	if _, err := os.Stat(filepath.Join(libc, "usr/lib/x86_64-linux-gnu/libc.so.6")); err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(filepath.Join(libc, "usr/lib/x86_64-linux-gnu/listed-but-missing.so")); err == nil {
		t.Error("a listed but missing file appeared")
	}
	if got, err := os.Readlink(filepath.Join(c.Packages["libtinfo6"], "usr/lib/x86_64-linux-gnu/libtinfo.so.6")); err != nil || got != "libtinfo.so.6.4" {
		t.Errorf("libtinfo.so.6 = %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(c.Packages["cacert"], "etc/ssl/certs/ca-bundle.crt")); err != nil || !strings.Contains(string(got), "fixture") {
		t.Errorf("cacert bundle = %q, %v", got, err)
	}
	if !strings.HasSuffix(c.Packages["cacert"], "-nss-cacert-host") || !strings.HasSuffix(c.Packages["iana-etc"], "-iana-etc-host") {
		t.Errorf("extra packages named %s, %s", c.Packages["cacert"], c.Packages["iana-etc"])
	}
	if _, err := os.Stat(filepath.Join(c.Packages["iana-etc"], "etc/services")); err != nil {
		t.Error(err)
	}
	// Popularity from the set's own graph: libc6 is below bash, libtinfo6,
	// mawk, base-files and tool++.
	if got := c.Popularity[closure.Name(libc)]; got != 5 {
		t.Errorf("popularity of libc6 = %d, want 5", got)
	}
	if got := c.Popularity[closure.Name(c.Packages["gcc-12-base"])]; got != 7 {
		t.Errorf("popularity of gcc-12-base = %d, want 7", got)
	}

	// NIXERY_PKGS_PATH usage: the set takes { system, ... } and resolves
	// the aliases.
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "-E",
		`let p = import `+dir+` { system = "x86_64-linux"; config = {}; }; in [ p.bashInteractive.outPath p.toolPP.outPath ]`).Output()
	if err != nil {
		t.Fatalf("evaluating the set: %v", err)
	}
	if want := `["` + bash + `","` + c.Packages["toolPP"] + `"]`; string(out) != want {
		t.Errorf("eval = %s, want %s", out, want)
	}

	// Idempotent: a second run in another directory writes the same files
	// and yields the same store paths.
	dir2 := t.TempDir()
	c2, err := Build(ctx, Options{WorkDir: dir2, DpkgDir: "testdata/dpkg", Root: "testdata/root"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Packages, c2.Packages) {
		t.Errorf("second build differs:\n%v\n%v", c.Packages, c2.Packages)
	}
	for _, f := range []string{"default.nix", "mk.nix", "all.nix", "builder.sh", "files/bash.list"} {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(dir2, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between runs or is empty", f)
		}
	}
}

// TestBuildQuick builds the quick corpus from this machine's own dpkg
// database and checks the graph against the database.
func TestBuildQuick(t *testing.T) {
	requireNix(t)
	c, err := Build(context.Background(), Options{Quick: true, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	debs, err := ReadDatabase("/var/lib/dpkg")
	if err != nil {
		t.Fatal(err)
	}
	g := Resolve(debs)
	if n := len(c.Debian); n < 10 || n > QuickMaxPackages {
		t.Errorf("quick corpus has %d Debian packages, want 10..%d", n, QuickMaxPackages)
	}
	// Every package's references are exactly its resolved dependencies.
	for attr, deb := range c.Debian {
		p, ok := c.Graph.Lookup(c.Packages[attr])
		if !ok {
			t.Fatalf("%s missing from graph", attr)
		}
		var got []string
		for _, r := range p.References {
			if r != p.Path {
				got = append(got, r)
			}
		}
		var want []string
		for _, d := range g.Deps[deb] {
			want = append(want, c.Packages[AttrName(d)])
		}
		if !reflect.DeepEqual(sortedCopy(got), sortedCopy(want)) {
			t.Errorf("references of %s = %v, want %v", attr, got, want)
		}
	}
	if _, ok := c.Debian["bash"]; !ok {
		t.Fatal("bash is not in the quick corpus")
	}
	bash := c.Packages["bash"]
	if _, err := os.Stat(filepath.Join(bash, "usr/bin/bash")); err != nil {
		t.Errorf("bash's store path has no usr/bin/bash: %v", err)
	}
	if c.Aliases["bashInteractive"] != "bash" {
		t.Errorf("Aliases = %v", c.Aliases)
	}
	// Popularity counts, for each package, the other packages whose
	// closure holds it; recount it from the dpkg graph.
	count := map[string]int64{}
	for _, deb := range c.Debian {
		cl, err := g.Closure(deb)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range cl {
			if d != deb {
				count[d]++
			}
		}
	}
	for attr, deb := range c.Debian {
		if got := c.Popularity[closure.Name(c.Packages[attr])]; got != count[deb] {
			t.Errorf("popularity of %s = %d, want %d", deb, got, count[deb])
		}
	}
	if count["libc6"] < int64(len(c.Debian))/2 {
		t.Errorf("libc6 is in only %d closures", count["libc6"])
	}
	if c.Bytes < 10<<20 {
		t.Errorf("quick corpus holds only %d bytes", c.Bytes)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
