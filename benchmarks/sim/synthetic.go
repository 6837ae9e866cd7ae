package sim

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/nixery-go/nixery/closure"
)

// SyntheticStorePath returns a valid store path for name, its hash derived
// from name and seed.
func SyntheticStorePath(seed uint64, name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	x := seed ^ 14695981039346656037
	for _, c := range []byte(name) {
		x = (x ^ uint64(c)) * 1099511628211
	}
	h := make([]byte, 32)
	for i := range h {
		x = x*6364136223846793005 + 1442695040888963407
		h[i] = alphabet[x>>59]
	}
	return closure.StoreDir + "/" + string(h) + "-" + name
}

// Synthetic returns a seeded package set of n packages shaped like a
// distribution: a few base libraries everything uses (a C library at the
// bottom), libraries that use a handful of others with a preference for
// popular ones, and applications on top. NAR sizes are log-normal (median
// about 400 kB, a few tens of MB); [SyntheticSizes] gives compressed sizes.
// The set has the shell packages (bashInteractive, coreutils, moreutils,
// nano) and cacert and iana-etc.
func Synthetic(seed uint64, n int) *Universe {
	n = max(n, 12)
	r := rand.New(rand.NewPCG(seed, 0x5e7))
	type pkg struct {
		attr string
		size int64
		deps []int
	}
	pkgs := make([]pkg, 0, n)
	add := func(attr string, size int64, deps ...int) int {
		pkgs = append(pkgs, pkg{attr: attr, size: size, deps: deps})
		return len(pkgs) - 1
	}
	logNormal := func(median float64, sigma float64) int64 {
		return int64(median * math.Exp(sigma*r.NormFloat64()))
	}
	libc := add("glibc", 30<<20)
	gcc := add("gcc-libs", 8<<20, libc)
	cacert := add("cacert", 200<<10)
	iana := add("iana-etc", 100<<10)
	_, _ = cacert, iana
	nLibs := n * 6 / 10
	base := len(pkgs)
	for len(pkgs) < base+nLibs {
		i := len(pkgs)
		deps := []int{libc}
		if r.IntN(3) == 0 {
			deps = append(deps, gcc)
		}
		for k := r.IntN(4); k > 0 && i > base; k-- {
			// Prefer early (more widely used) libraries.
			d := base + int(float64(i-base)*math.Pow(r.Float64(), 2.5))
			deps = append(deps, d)
		}
		add(fmt.Sprintf("lib%d", i), logNormal(400<<10, 1.3), deps...)
	}
	libs := len(pkgs)
	dep := func() int { return base + int(float64(libs-base)*math.Pow(r.Float64(), 1.8)) }
	bash := add("bashInteractive", 8<<20, libc, dep())
	coreutils := add("coreutils", 6<<20, libc, dep())
	perl := add("perl", 40<<20, libc, dep(), dep())
	add("moreutils", 300<<10, libc, perl, dep())
	add("nano", 2<<20, libc, dep(), dep())
	_, _ = bash, coreutils
	for len(pkgs) < n {
		i := len(pkgs)
		deps := []int{libc}
		for k := 1 + r.IntN(5); k > 0; k-- {
			deps = append(deps, dep())
		}
		if r.IntN(8) == 0 {
			deps = append(deps, perl)
		}
		add(fmt.Sprintf("app%d", i), logNormal(1<<20, 1.5), deps...)
	}
	paths := make([]closure.Path, len(pkgs))
	u := &Universe{
		Name:     fmt.Sprintf("synthetic (seed %d, %d packages)", seed, len(pkgs)),
		Packages: map[string]string{},
		Shell:    []string{"bashInteractive", "coreutils", "moreutils", "nano"},
		Always:   []string{"cacert", "iana-etc"},
	}
	for i, p := range pkgs {
		name := p.attr + "-1.0"
		if p.attr == "cacert" {
			name = "nss-cacert-3.0"
		}
		paths[i] = closure.Path{Path: SyntheticStorePath(seed, name), NarSize: p.size}
		u.Packages[p.attr] = paths[i].Path
	}
	for i, p := range pkgs {
		for _, d := range p.deps {
			paths[i].References = append(paths[i].References, paths[d].Path)
		}
	}
	g, err := closure.New(paths, nil)
	if err != nil {
		panic("sim: synthetic graph: " + err.Error()) // a bug in this generator
	}
	u.Graph = g
	u.Popularity = closure.Compute(g)
	return u
}
