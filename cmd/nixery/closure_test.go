package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/internal/testutil"
)

// closureEnv is an environment with no package source configured, so the
// bundled set is used, extracted into a temporary cache directory.
func closureEnv(t *testing.T, extra map[string]string) func(string) string {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	return func(k string) string { return extra[k] }
}

func TestClosureCommand(t *testing.T) {
	testutil.RequireTools(t, "nix-instantiate", "nix-store")
	var stdout, stderr bytes.Buffer
	err := closureCmd(context.Background(), []string{"--system", "x86_64-linux", "curl"}, closureEnv(t, nil), &stdout, &stderr)
	if err != nil {
		t.Fatalf("nixery closure curl: %v\n%s", err, stderr.String())
	}
	var paths []closure.Path
	if err := json.Unmarshal(stdout.Bytes(), &paths); err != nil {
		t.Fatalf("output is not a JSON array of paths: %v\n%s", err, stdout.String())
	}
	if len(paths) < 10 {
		t.Errorf("curl's closure has %d paths, want >= 10", len(paths))
	}
	if !slices.IsSortedFunc(paths, func(a, b closure.Path) int { return strings.Compare(a.Path, b.Path) }) {
		t.Error("paths are not sorted")
	}
	// The output is a valid graph with curl and glibc in it.
	g, err := closure.New(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range g.Paths() {
		if p.NarSize <= 0 {
			t.Errorf("%s: narSize %d", p.Path, p.NarSize)
		}
		names = append(names, closure.Name(p.Path))
	}
	for _, want := range []string{"curl-7.88.1", "glibc-2.36", "openssl-3.0.19"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in %v", want, names)
		}
	}
	if roots := g.Roots(); len(roots) != 1 || closure.Name(roots[0]) != "curl-7.88.1" {
		t.Errorf("roots = %v, want curl only", roots)
	}
}

func TestClosureCommandErrors(t *testing.T) {
	testutil.RequireTools(t, "nix-instantiate", "nix-store")
	env := closureEnv(t, nil)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"curl", "doesnotexist", "alsomissing"}, []string{"doesnotexist", "alsomissing", "no package named"}},
		{[]string{`${builtins.readFile "/etc/passwd"}`}, []string{"invalid package name"}},
		{[]string{"--system=riscv64-linux", "curl"}, []string{"unsupported system", "riscv64-linux"}},
		{nil, []string{"no package names"}},
		{[]string{"-system"}, []string{"flag needs an argument"}},
	} {
		var stdout, stderr bytes.Buffer
		err := closureCmd(context.Background(), tc.args, env, &stdout, &stderr)
		if err == nil {
			t.Errorf("closure %q succeeded", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("closure %q: error %q does not mention %q", tc.args, err, w)
			}
		}
		if stdout.Len() != 0 {
			t.Errorf("closure %q wrote %q to stdout", tc.args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	err := closureCmd(context.Background(), []string{"hello"}, func(k string) string {
		return map[string]string{"NIX_TIMEOUT": "soon"}[k]
	}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "NIX_TIMEOUT") {
		t.Errorf("bad NIX_TIMEOUT: %v", err)
	}
}
