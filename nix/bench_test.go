package nix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkBuildWarm measures one Build whose outputs are already in the
// store: the fixed cost of evaluation, realisation and the closure query
// that every uncached image request pays.
func BenchmarkBuildWarm(b *testing.B) {
	requireNix(b)
	builder := NewBuilder(testBundled(b), Options{})
	req := Request{Packages: []string{"bashInteractive", "coreutils", "curl", "jq"}}
	if _, err := builder.Build(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res, err := builder.Build(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if res.Graph.Len() < 10 {
			b.Fatalf("graph of %d paths", res.Graph.Len())
		}
	}
}

// BenchmarkValidateName measures the grammar check run on every name.
func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		if err := ValidateName("python3Packages.numpy"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildARM64Cold measures a cold Build of the bundled set for
// aarch64-linux: "shell-curl" the packages of the image shell/curl,
// "all" every top-level package. Each iteration points the set at its
// own name for the Debian arm64 tree (NIXERY_DEBIAN_ARM64_ROOT, a
// symbolic link to the one .ci/setup unpacked), which gives every
// derivation a new store path, so that nothing is built already. Run it
// with -benchtime 1x: each iteration adds a copy of the set to the store.
func BenchmarkBuildARM64Cold(b *testing.B) {
	requireNix(b)
	real := os.Getenv("NIXERY_DEBIAN_ARM64_ROOT")
	if real == "" {
		real = "/var/lib/nixery/debian-arm64"
	}
	if _, err := os.Stat(filepath.Join(real, "fs", "usr", "lib", "aarch64-linux-gnu", "libc.so.6")); err != nil {
		b.Fatalf("no Debian arm64 tree (%v); run .ci/setup", err)
	}
	src := testBundled(b)
	dir, err := src.Dir()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pkgs func() []string
	}{
		{"shell-curl", func() []string {
			return []string{"bashInteractive", "coreutils", "moreutils", "nano", "curl", "cacert", "iana-etc"}
		}},
		{"all", func() []string { return topLevelPackagesFor(b, dir, "aarch64-linux") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			pkgs := c.pkgs()
			for b.Loop() {
				b.StopTimer()
				root := filepath.Join(b.TempDir(), fmt.Sprintf("arm64-%d", time.Now().UnixNano()))
				if err := os.MkdirAll(root, 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(real, "fs"), filepath.Join(root, "fs")); err != nil {
					b.Fatal(err)
				}
				b.Setenv("NIXERY_DEBIAN_ARM64_ROOT", root)
				builder := NewBuilder(src, Options{Timeout: 20 * time.Minute})
				b.StartTimer()
				res, err := builder.Build(context.Background(), Request{Packages: pkgs, System: "aarch64-linux"})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(res.Graph.Len()), "paths")
				res.Release()
			}
		})
	}
}
