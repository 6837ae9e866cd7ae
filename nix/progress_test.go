package nix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestRealiseProgress: nix-store --realise's standard error, written in
// odd pieces, gives the derivations built so far out of the total.
func TestRealiseProgress(t *testing.T) {
	var got []string
	p := &realiseProgress{report: func(phase string, done, total int) {
		got = append(got, fmt.Sprintf("%s %d/%d", phase, done, total))
	}}
	stderr := "these 3 derivations will be built:\n" +
		"  /nix/store/aaaa-a.drv\n  /nix/store/bbbb-b.drv\n  /nix/store/cccc-c.drv\n" +
		"building '/nix/store/aaaa-a.drv'...\nsome build output\n" +
		"building '/nix/store/bbbb-b.drv'...\n" +
		"building '/nix/store/cccc-c.drv'...\n"
	for i := 0; i < len(stderr); i += 7 {
		p.Write([]byte(stderr[i:min(i+7, len(stderr))]))
	}
	want := []string{"realising 0/3", "realising 0/3", "realising 1/3", "realising 2/3"}
	if !slices.Equal(got, want) {
		t.Errorf("reports %q, want %q", got, want)
	}

	got = nil
	p = &realiseProgress{report: func(phase string, done, total int) {
		got = append(got, fmt.Sprintf("%s %d/%d", phase, done, total))
	}}
	p.Write([]byte("this derivation will be built:\n  /nix/store/aaaa-a.drv\nbuilding '/nix/store/aaaa-a.drv'...\n"))
	if want := []string{"realising 0/1", "realising 0/1"}; !slices.Equal(got, want) {
		t.Errorf("one derivation: reports %q, want %q", got, want)
	}
}

// TestBuildReportsProgress: a Build that makes real Nix build two new
// derivations (one depending on the other) reports evaluating, then
// realising up to 2 of 2.
func TestBuildReportsProgress(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	seed := strconv.FormatInt(time.Now().UnixNano(), 10)
	expr := `{ ... }: rec {
  dep = derivation { name = "nixery-progress-dep-` + seed + `"; system = "x86_64-linux"; builder = "/bin/bash"; args = [ "-c" "echo ` + seed + ` > $out" ]; };
  top = derivation { name = "nixery-progress-top-` + seed + `"; system = "x86_64-linux"; builder = "/bin/bash"; args = [ "-c" "echo ${dep} > $out" ]; };
}`
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{GCRootDir: t.TempDir()})
	var mu sync.Mutex
	var got []string
	res := build(t, b, Request{Packages: []string{"top"}, Progress: func(phase string, done, total int) {
		mu.Lock()
		defer mu.Unlock()
		s := fmt.Sprintf("%s %d/%d", phase, done, total)
		if len(got) == 0 || got[len(got)-1] != s {
			got = append(got, s)
		}
	}})
	defer res.Release()
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 3 || got[0] != "evaluating 0/0" || got[len(got)-1] != "realising 2/2" || !slices.Contains(got, "realising 0/2") {
		t.Errorf("progress %q: want evaluating, then realising 0/2 up to 2/2", got)
	}
}

// TestPackagesListsAttributesWithVersions: the listing of a local tree.
func TestPackagesListsAttributesWithVersions(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	expr := `{ ... }: {
  b = derivation { name = "b-2.0"; version = "2.0"; system = "x86_64-linux"; builder = "/bin/sh"; };
  a = derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; };
  notapackage = 3;
}`
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{})
	pkgs, err := b.Packages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []PackageInfo{{"a", ""}, {"b", "2.0"}}; !slices.Equal(pkgs, want) {
		t.Errorf("Packages = %v, want %v", pkgs, want)
	}
	ch, _ := NewChannelSource("https://example.invalid/nixexprs.tar.xz")
	if _, err := NewBuilder(ch, Options{}).Packages(t.Context()); !errors.Is(err, ErrNotListable) {
		t.Errorf("a channel's listing: %v, want ErrNotListable", err)
	}
}
