package nix

import (
	"context"
	"testing"
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
