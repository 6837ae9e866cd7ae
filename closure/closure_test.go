package closure

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
)

// example is the graph from the package documentation.
func example(t testing.TB) *Graph {
	t.Helper()
	glibc, zlib, openssl, libcurl, curl := testutil.StorePath("glibc-2.36"), testutil.StorePath("zlib-1.2"), testutil.StorePath("openssl-3.0"), testutil.StorePath("libcurl-8.0"), testutil.StorePath("curl-8.0")
	g, err := New([]Path{
		{Path: curl, NarSize: 100, References: []string{libcurl, openssl, zlib, glibc}},
		{Path: libcurl, NarSize: 50, References: []string{openssl, zlib, glibc}},
		{Path: openssl, NarSize: 30, References: []string{glibc}},
		{Path: zlib, NarSize: 10, References: []string{glibc}},
		{Path: glibc, NarSize: 1000, References: []string{glibc}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGraphExample(t *testing.T) {
	g := example(t)
	if got, want := g.Roots(), []string{testutil.StorePath("curl-8.0")}; !reflect.DeepEqual(got, want) {
		t.Errorf("Roots = %v, want %v", got, want)
	}
	topo := g.TopoOrder()
	pos := map[string]int{}
	for i, p := range topo {
		pos[p] = i
	}
	for _, p := range g.Paths() {
		for _, r := range p.References {
			if r != p.Path && pos[r] >= pos[p.Path] {
				t.Errorf("%s listed after its user %s", r, p.Path)
			}
		}
	}
	if topo[0] != testutil.StorePath("glibc-2.36") || topo[len(topo)-1] != testutil.StorePath("curl-8.0") {
		t.Errorf("TopoOrder = %v", topo)
	}
	if got := g.ClosureSize(testutil.StorePath("libcurl-8.0")); got != 1090 {
		t.Errorf("ClosureSize(libcurl) = %d, want 1090", got)
	}
	if got := g.ClosureSize(testutil.StorePath("glibc-2.36")); got != 1000 {
		t.Errorf("ClosureSize(glibc) = %d, want 1000", got)
	}
	if got := len(g.Closure(testutil.StorePath("openssl-3.0"))); got != 2 {
		t.Errorf("Closure(openssl) has %d paths, want 2", got)
	}
	if got := g.Closure(testutil.StorePath("zlib-1.2"), testutil.StorePath("zlib-1.2")); len(got) != 2 {
		t.Errorf("Closure(zlib, zlib) = %v, want zlib and glibc once each", got)
	}
	if _, err := g.Subgraph(testutil.StorePath("zlib-1.2"), testutil.StorePath("zlib-1.2")); err != nil {
		t.Errorf("Subgraph(zlib, zlib): %v", err)
	}
	sub, err := g.Subgraph(testutil.StorePath("libcurl-8.0"))
	if err != nil || sub.Len() != 4 {
		t.Fatalf("Subgraph(libcurl) = %v paths, %v", sub.Len(), err)
	}
	want := Popularity{"glibc-2.36": 4, "openssl-3.0": 2, "zlib-1.2": 2, "libcurl-8.0": 1, "curl-8.0": 0}
	if got := Compute(g); !reflect.DeepEqual(got, want) {
		t.Errorf("Compute = %v, want %v", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	a, b := testutil.StorePath("a-1"), testutil.StorePath("b-1")
	for _, tc := range []struct {
		name  string
		paths []Path
		roots []string
		want  error
	}{
		{"dangling", []Path{{Path: a, References: []string{b}}}, nil, ErrDanglingRef},
		{"cycle", []Path{{Path: a, References: []string{b}}, {Path: b, References: []string{a}}}, nil, ErrCycle},
		{"duplicate", []Path{{Path: a}, {Path: a}}, nil, ErrDuplicatePath},
		{"invalid", []Path{{Path: "/usr/bin/a"}}, nil, ErrInvalidPath},
		{"negative", []Path{{Path: a, NarSize: -1}}, nil, ErrNegativeNarSize},
		{"unknown root", []Path{{Path: a}}, []string{b}, ErrUnknownRoot},
	} {
		if _, err := New(tc.paths, tc.roots); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/0c7c96gikmzv87i7lv3vq5s1cmfjd6zf-glibc-2.36-2": "glibc-2.36-2",
		"/nix/store/0c7c96gikmzv87i7lv3vq5s1cmfjd6zf-iana-etc":     "iana-etc",
		"plain": "plain",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePathInfoShapes(t *testing.T) {
	for _, file := range []string{"testdata/pathinfo-2.8.json", "testdata/pathinfo-object.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		paths, err := ParsePathInfo(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		g, err := New(paths, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if g.Len() != 3 || len(g.Roots()) != 1 || Name(g.Roots()[0]) != "hello-2.12" {
			t.Errorf("%s: %d paths, roots %v", file, g.Len(), g.Roots())
		}
	}
	for _, bad := range []string{``, `3`, `[{"path":"/nix/store/x"}]`, `{"/nix/store/0c7c96gikmzv87i7lv3vq5s1cmfjd6zf-a":null}`,
		`[{"path":"/nix/store/0c7c96gikmzv87i7lv3vq5s1cmfjd6zf-a","references":[]}]`} {
		if _, err := ParsePathInfo([]byte(bad)); err == nil {
			t.Errorf("ParsePathInfo(%q) succeeded", bad)
		}
	}
}

func TestParseReferencesGraph(t *testing.T) {
	data, err := os.ReadFile("testdata/refgraph.json")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ParseReferencesGraph(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 || paths[0].NarSize == 0 {
		t.Errorf("got %+v", paths)
	}
}

func TestLoadPopularity(t *testing.T) {
	p, err := LoadPopularity(strings.NewReader(`{"glibc-2.27": 302401, "zlib-1.2": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Of(testutil.StorePath("glibc-2.27")); !ok || v != 302401 {
		t.Errorf("Of(glibc) = %d, %v", v, ok)
	}
	if _, ok := p.Of(testutil.StorePath("missing-1")); ok {
		t.Error("missing name found")
	}
	for _, bad := range []string{`[]`, `{"a": -1}`, `{"a": 1} {}`, `{"a": "x"}`} {
		if _, err := LoadPopularity(strings.NewReader(bad)); err == nil {
			t.Errorf("LoadPopularity(%q) succeeded", bad)
		}
	}
}

func FuzzParsePathInfo(f *testing.F) {
	for _, file := range []string{"testdata/pathinfo-2.8.json", "testdata/pathinfo-object.json", "testdata/refgraph.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) ([]Path, error){ParsePathInfo, ParseReferencesGraph} {
			paths, err := parse(data)
			if err != nil {
				continue
			}
			g, err := New(paths, nil)
			if err != nil {
				continue
			}
			if len(g.TopoOrder()) != g.Len() {
				t.Fatalf("topological order lost paths")
			}
			Compute(g)
		}
	})
}
