package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A PackageSet describes a small nixpkgs-shaped package set for load tests:
// cheap packages, so that many distinct images can be built, and a few
// big or slow ones. Every set also has cacert and iana-etc, which nixery
// adds to every image. Packages are derivations of a line of shell each,
// built by Nix in well under a second.
type PackageSet struct {
	// Small are packages holding one small file.
	Small []string
	// Big are packages holding a file of so many random bytes, which
	// compress to about as many: their layer is that big.
	Big map[string]int64
	// Slow are packages whose build sleeps that long.
	Slow map[string]time.Duration
	// Nonce, when set, goes into every derivation, so that Nix builds
	// them anew rather than finding them in the store (a slow package
	// built before is not slow).
	Nonce string
	// Base, when set, is a nixpkgs-shaped tree (a directory with
	// default.nix, such as the module's nix/pkgs, the bundled set) whose
	// attributes the set has too, called with the set's arguments: its
	// cacert and iana-etc are the base's, and its programs make images
	// that run, with the set's big, small or slow packages in them.
	Base string
}

// SmallNames returns n names for [PackageSet.Small]: prefix0, prefix1, ...
func SmallNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = prefix + strconv.Itoa(i)
	}
	return names
}

// Write writes the set's default.nix into dir.
func (s PackageSet) Write(dir string) error {
	var b strings.Builder
	b.WriteString("# Written by internal/testutil's PackageSet for a load test.\nargs@{ system ? \"x86_64-linux\", ... }:\nlet\n")
	fmt.Fprintf(&b, "  nonce = %q;\n", s.Nonce)
	b.WriteString(`  pkg = name: script: derivation {
    inherit name system nonce;
    builder = "/bin/sh";
    args = [ "-c" "${script}; exit 0" ];
  };
  small = name: pkg name "/bin/mkdir $out && echo ${name} > $out/${name}";
in
`)
	extra := []string{"cacert", "iana-etc"}
	if s.Base != "" {
		base, err := filepath.Abs(s.Base)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "(import %q (args // { inherit system; })) //\n", base)
		extra = nil
	}
	b.WriteString(`{
`)
	names := map[string]bool{}
	add := func(name, expr string) error {
		if names[name] || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`).MatchString(name) {
			return fmt.Errorf("testutil: package name %q is taken or not an attribute name", name)
		}
		names[name] = true
		fmt.Fprintf(&b, "  %s = %s;\n", name, expr)
		return nil
	}
	for _, n := range append(slices.Clone(s.Small), extra...) {
		if err := add(n, fmt.Sprintf("small %q", n)); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(s.Big) {
		if err := add(n, fmt.Sprintf(`pkg %q "/bin/mkdir $out && /usr/bin/head -c %d /dev/urandom > $out/blob"`, n, s.Big[n])); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(s.Slow) {
		if err := add(n, fmt.Sprintf(`pkg %q "/bin/sleep %.3f && /bin/mkdir $out"`, n, s.Slow[n].Seconds())); err != nil {
			return err
		}
	}
	b.WriteString("}\n")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "default.nix"), []byte(b.String()), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// GitCommit makes dir a git repository (if it is not one) and commits
// everything in it, returning the commit's hash: a package set served
// with NIXERY_PKGS_REPO at that commit is pinned, so its images are
// cached by request.
func GitCommit(ctx context.Context, dir string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir, "-c", "user.name=nixery-test", "-c", "user.email=test@nixery.invalid",
			"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("testutil: git %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		if _, err := git("init", "-q"); err != nil {
			return "", err
		}
	}
	if _, err := git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := git("commit", "-q", "--allow-empty", "-m", "package set"); err != nil {
		return "", err
	}
	return git("rev-parse", "HEAD")
}

// ClientFrom returns an HTTP client whose connections come from the local
// address ip, a loopback address such as 127.0.0.7: on Linux the whole of
// 127.0.0.0/8 reaches a server on 127.0.0.1, so that one machine can play
// many clients. It does not follow redirects and keeps up to 4 idle
// connections.
func ClientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4, ResponseHeaderTimeout: 10 * time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// LoopbackIP returns the i-th of distinct loopback addresses from
// 127.0.1.0 on, for [ClientFrom]: 0 gives 127.0.1.0, 256 gives 127.0.2.0.
func LoopbackIP(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/256, i%256)
}

// A PacedReader reads at most N bytes from R every Pause: a client that
// reads slowly but steadily.
type PacedReader struct {
	R     io.Reader
	N     int
	Pause time.Duration
}

func (p *PacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.Pause)
	return p.R.Read(b[:min(len(b), p.N)])
}

// RSS returns the running server's resident set size in bytes (VmRSS)
// and its peak so far (VmHWM), from /proc.
func (n *Nixery) RSS() (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("testutil: /proc status %s: %q", k, v)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		return 0, 0, errors.New("testutil: no VmRSS and VmHWM in /proc status")
	}
	return rss, peak, sc.Err()
}

// debugURL matches the line `nixery serve` logs for its debug endpoints.
var debugURL = regexp.MustCompile(`msg="debug endpoints" url=(http://[0-9.:]+/debug/pprof/)`)

// Goroutines returns how many goroutines the server runs now, from its
// goroutine profile. The server must have been started with
// NIXERY_DEBUG_ADDR=127.0.0.1:0 in its environment.
func (n *Nixery) Goroutines(ctx context.Context) (int, error) {
	m := debugURL.FindStringSubmatch(n.Log())
	if m == nil {
		return 0, errors.New("testutil: the server logged no debug endpoints; start it with NIXERY_DEBUG_ADDR=127.0.0.1:0")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m[1]+"goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("testutil: goroutine profile: %w", err)
	}
	total, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("testutil: goroutine profile starts %q", line)
	}
	return strconv.Atoi(total)
}
