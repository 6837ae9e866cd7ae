package nix

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixery-go/nixery/closure"
)

func build(t *testing.T, b *Builder, req Request) *Result {
	t.Helper()
	res, err := b.Build(context.Background(), req)
	if err != nil {
		t.Fatalf("Build(%v): %v", req.Packages, err)
	}
	return res
}

// glibcPath returns the glibc store path in g's closure of root.
func glibcPath(t *testing.T, g *closure.Graph, root string) string {
	t.Helper()
	for _, p := range g.Closure(root) {
		if strings.HasPrefix(closure.Name(p), "glibc-") {
			return p
		}
	}
	t.Fatalf("no glibc in the closure of %s", root)
	return ""
}

func TestBuildCurlAndBash(t *testing.T) {
	requireNix(t)
	b, _ := countingBuilder(t, testBundled(t), Options{})
	res := build(t, b, Request{Packages: []string{"curl", "bashInteractive"}, System: "x86_64-linux"})

	if len(res.Packages) != 2 {
		t.Fatalf("got %d packages, want 2", len(res.Packages))
	}
	curl, bash := res.Packages[0], res.Packages[1]
	if curl.Name != "curl" || curl.Attr != "curl" || closure.Name(curl.Path) != "curl-7.88.1" {
		t.Errorf("curl resolved to %+v", curl)
	}
	if bash.Attr != "bashInteractive" || !strings.HasPrefix(closure.Name(bash.Path), "bash-interactive-") {
		t.Errorf("bashInteractive resolved to %+v", bash)
	}
	if got, want := res.Graph.Roots(), []string{bash.Path, curl.Path}; !slices.Equal(got, want) && !slices.Equal(got, []string{curl.Path, bash.Path}) {
		t.Errorf("roots = %v, want the two outputs", got)
	}
	curlClosure := res.Graph.Closure(curl.Path)
	if len(curlClosure) < 10 {
		t.Errorf("curl's closure has %d paths, want >= 10: %v", len(curlClosure), curlClosure)
	}
	t.Logf("curl's closure: %d paths, %d bytes", len(curlClosure), res.Graph.ClosureSize(curl.Path))
	if g1, g2 := glibcPath(t, res.Graph, curl.Path), glibcPath(t, res.Graph, bash.Path); g1 != g2 {
		t.Errorf("curl and bash use different glibcs: %s, %s", g1, g2)
	}
	for _, p := range res.Graph.Paths() {
		if p.NarSize <= 0 || !strings.HasPrefix(p.NarHash, "sha256") {
			t.Errorf("%s: narSize %d, narHash %q", p.Path, p.NarSize, p.NarHash)
		}
		if _, err := os.Stat(p.Path); err != nil {
			t.Errorf("%s not in the store: %v", p.Path, err)
		}
	}
	// libcurl's dependencies are separate store paths that curl references.
	for _, lib := range []string{"openssl-", "zlib-", "nghttp2-", "krb5-"} {
		found := false
		for _, p := range curlClosure {
			found = found || strings.HasPrefix(closure.Name(p), lib)
		}
		if !found {
			t.Errorf("no %s* in curl's closure", lib)
		}
	}
}

func TestBuildUnknownPackages(t *testing.T) {
	requireNix(t)
	b, runs := countingBuilder(t, testBundled(t), Options{})
	_, err := b.Build(context.Background(), Request{Packages: []string{"curl", "doesnotexist", "alsomissing", "builtins", "import"}})
	var unknown *UnknownPackagesError
	if !errors.As(err, &unknown) {
		t.Fatalf("err = %v, want *UnknownPackagesError", err)
	}
	want := []string{"alsomissing", "builtins", "doesnotexist", "import"}
	if !slices.Equal(unknown.Names, want) {
		t.Errorf("unknown = %v, want %v", unknown.Names, want)
	}
	for _, n := range want {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("message %q does not name %s", err, n)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("Nix ran %d times, want 1 (evaluation only, nothing built)", n)
	}
}

func TestBuildNameResolution(t *testing.T) {
	requireNix(t)
	dir := testSet(t, "names", map[string]string{"@NONCE@": nonce(t)})
	src, err := NewPathSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := countingBuilder(t, src, Options{})
	res := build(t, b, Request{Packages: []string{"7zip", "mixedcase", "MixedCase", "OUTER.Inner.leaf"}})
	want := []Package{
		{Name: "7zip", Attr: "_7zip"},
		{Name: "mixedcase", Attr: "MixedCase"},
		{Name: "MixedCase", Attr: "MixedCase"},
		{Name: "OUTER.Inner.leaf", Attr: "outer.inner.leaf"},
	}
	for i, w := range want {
		got := res.Packages[i]
		if got.Name != w.Name || got.Attr != w.Attr {
			t.Errorf("package %d = %+v, want name %s attr %s", i, got, w.Name, w.Attr)
		}
		data, err := os.ReadFile(filepath.Join(got.Path, "bin", closure.Name(got.Path)))
		if err != nil {
			t.Errorf("%s: %v", got.Name, err)
		} else if !strings.Contains(string(data), t.Name()) {
			t.Errorf("%s: unexpected content %q", got.Name, data)
		}
	}
	if res.Packages[1].Path != res.Packages[2].Path {
		t.Errorf("mixedcase and MixedCase differ: %s, %s", res.Packages[1].Path, res.Packages[2].Path)
	}

	_, err = b.Build(context.Background(), Request{Packages: []string{"removed", "outer", "outer.notAPackage", "outer.inner.leaf.x", "7zip"}})
	var unknown *UnknownPackagesError
	if !errors.As(err, &unknown) {
		t.Fatalf("err = %v, want *UnknownPackagesError", err)
	}
	if want := []string{"outer", "outer.inner.leaf.x", "outer.notAPackage", "removed"}; !slices.Equal(unknown.Names, want) {
		t.Errorf("unknown = %v, want %v", unknown.Names, want)
	}
}

func TestBuildBundledCaseInsensitiveAndNested(t *testing.T) {
	requireNix(t)
	b, _ := countingBuilder(t, testBundled(t), Options{})
	res := build(t, b, Request{Packages: []string{"bashinteractive", "IANA-ETC", "gitandtools.git", "git", "python3packages.six"}})
	attrs := make([]string, len(res.Packages))
	for i, p := range res.Packages {
		attrs[i] = p.Attr
	}
	if want := []string{"bashInteractive", "iana-etc", "gitAndTools.git", "git", "python3Packages.six"}; !slices.Equal(attrs, want) {
		t.Errorf("attrs = %v, want %v", attrs, want)
	}
	if res.Packages[2].Path != res.Packages[3].Path {
		t.Errorf("gitAndTools.git and git differ")
	}
	if _, err := os.Stat(filepath.Join(res.Packages[1].Path, "etc", "services")); err != nil {
		t.Error(err)
	}
}

func TestBuildUnsupportedSystem(t *testing.T) {
	requireNix(t)
	// A system no source has: rejected before Nix runs.
	b, runs := countingBuilder(t, testBundled(t), Options{})
	_, err := b.Build(context.Background(), Request{Packages: []string{"curl"}, System: "riscv64-linux"})
	var unsupported *UnsupportedSystemError
	if !errors.As(err, &unsupported) || unsupported.System != "riscv64-linux" {
		t.Fatalf("err = %v, want *UnsupportedSystemError", err)
	}
	if runs.Load() != 0 {
		t.Errorf("Nix ran %d times", runs.Load())
	}

	// A set of a path whose Nix lacks the bundled set's extra-platforms
	// (and has no aarch64 builder): Nix refuses to build aarch64-linux,
	// and the error names the system.
	dir := t.TempDir()
	set := `{ system ? "x86_64-linux", ... }: { armonly = derivation { name = "nixery-arm-test-` + strconv.FormatInt(time.Now().UnixNano(), 10) + `"; inherit system; builder = "/bin/bash"; args = [ "-c" "echo > $out; exit 0" ]; }; }`
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(set), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := NewPathSource(dir)
	b, runs = countingBuilder(t, src, Options{})
	_, err = b.Build(context.Background(), Request{Packages: []string{"armonly"}, System: "aarch64-linux"})
	if !errors.As(err, &unsupported) || unsupported.System != "aarch64-linux" || !strings.Contains(err.Error(), "aarch64-linux") {
		t.Fatalf("err = %v, want *UnsupportedSystemError naming aarch64-linux", err)
	}
	if runs.Load() == 0 {
		t.Error("Nix did not run")
	}

	// The bundled set without its arm64 files: the set itself refuses,
	// naming the system and what to run.
	t.Setenv("NIXERY_DEBIAN_ARM64_ROOT", t.TempDir())
	b, _ = countingBuilder(t, testBundled(t), Options{})
	_, err = b.Build(context.Background(), Request{Packages: []string{"hello"}, System: "aarch64-linux"})
	if !errors.As(err, &unsupported) || unsupported.System != "aarch64-linux" || !strings.Contains(unsupported.Reason, ".ci/setup") {
		t.Fatalf("err = %v, want *UnsupportedSystemError from the set", err)
	}
}

// TestBuildAArch64 builds the bundled set's curl for aarch64-linux: arm64
// ELF files whose interpreter and RUNPATH are store paths of the same
// system, none shared with x86_64-linux's.
func TestBuildAArch64(t *testing.T) {
	requireNix(t)
	b, _ := countingBuilder(t, testBundled(t), Options{})
	arm := build(t, b, Request{Packages: []string{"curl"}, System: "aarch64-linux"})
	amd := build(t, b, Request{Packages: []string{"curl"}, System: "x86_64-linux"})
	armPaths, amdPaths := arm.Graph.Closure(arm.Packages[0].Path), amd.Graph.Closure(amd.Packages[0].Path)
	for _, p := range armPaths {
		if slices.Contains(amdPaths, p) {
			t.Errorf("%s is in both closures", p)
		}
	}
	f, err := elf.Open(filepath.Join(arm.Packages[0].Path, "bin", "curl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("curl is for %v", f.Machine)
	}
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data := make([]byte, p.Filesz)
			p.ReadAt(data, 0)
			interp = strings.TrimRight(string(data), "\x00")
		}
	}
	if !strings.HasSuffix(interp, "/lib/ld-linux-aarch64.so.1") || !slices.Contains(armPaths, strings.TrimSuffix(interp, "/lib/ld-linux-aarch64.so.1")) {
		t.Errorf("interpreter %q is not glibc of the closure %v", interp, armPaths)
	}
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	if len(runpath) != 1 || !strings.HasPrefix(runpath[0], closure.StoreDir+"/") {
		t.Errorf("RUNPATH %v", runpath)
	}
}

func TestBuildNixNotFound(t *testing.T) {
	b, _ := countingBuilder(t, testBundled(t), Options{NixDir: t.TempDir()})
	_, err := b.Build(context.Background(), Request{Packages: []string{"hello"}})
	if !errors.Is(err, ErrNixNotFound) {
		t.Fatalf("err = %v, want ErrNixNotFound", err)
	}
	if !strings.Contains(err.Error(), "apt-get install nix-bin") {
		t.Errorf("message %q does not say how to install Nix", err)
	}
}

func TestBuildEvaluationError(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte("{ ... }: { broken = derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/bash\"; args = [ \"-c\" \"echo build-went-wrong >&2; exit 3\" ]; }; syntax = 1 +; }"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{})
	_, err := b.Build(context.Background(), Request{Packages: []string{"broken"}})
	var be *BuildError
	if !errors.As(err, &be) || be.Op != "evaluate" || !strings.Contains(be.Log, "syntax error") {
		t.Fatalf("err = %v, want an evaluation *BuildError with Nix's message", err)
	}

	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte("{ ... }: { broken = derivation { name = \"x-"+strconv.FormatInt(time.Now().UnixNano(), 10)+"\"; system = \"x86_64-linux\"; builder = \"/bin/bash\"; args = [ \"-c\" \"echo build-went-wrong >&2; exit 3\" ]; }; }"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(context.Background(), Request{Packages: []string{"broken"}})
	if !errors.As(err, &be) || be.Op != "build" || !strings.Contains(be.Log, "build-went-wrong") {
		t.Fatalf("err = %v, want a build *BuildError with the builder's output", err)
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestBuildTimeout(t *testing.T) {
	requireNix(t)
	pidfile := filepath.Join(t.TempDir(), "pids")
	dir := testSet(t, "sleepy", map[string]string{"@PIDFILE@": pidfile})
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{Timeout: 2 * time.Second})
	start := time.Now()
	_, err := b.Build(context.Background(), Request{Packages: []string{"sleepy"}})
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if elapsed > 2*time.Second+killGrace+2*time.Second {
		t.Errorf("Build returned after %v", elapsed)
	}
	data, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("the builder did not start: %v", err)
	}
	pids := strings.Fields(string(data))
	if len(pids) != 2 {
		t.Fatalf("pid file holds %q", data)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("builder process %d still runs after the timeout", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestBuildContextCanceled(t *testing.T) {
	requireNix(t)
	pidfile := filepath.Join(t.TempDir(), "pids")
	dir := testSet(t, "sleepy", map[string]string{"@PIDFILE@": pidfile})
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(pidfile); err == nil {
				cancel()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_, err := b.Build(ctx, Request{Packages: []string{"sleepy"}})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// writeTarball writes the files of fsys under top/ into a .tar.gz at path.
func writeTarball(t *testing.T, path, top string, fsys fs.FS) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: top + "/", Mode: 0o755, Typeflag: tar.TypeDir})
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: top + "/" + p, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildChannelTarball(t *testing.T) {
	requireNix(t)
	commit := "0123456789abcdef0123456789abcdef01234567"
	tarball := filepath.Join(t.TempDir(), commit+".tar.gz")
	writeTarball(t, tarball, "nixpkgs-"+commit, BundledFS())
	src, err := NewChannelSource("file://" + tarball)
	if err != nil {
		t.Fatal(err)
	}
	key, pinned, err := src.CacheKey("latest")
	if err != nil || !pinned || !strings.Contains(key, commit) {
		t.Errorf("CacheKey = %q, %v, %v; want pinned key with the commit", key, pinned, err)
	}
	b, _ := countingBuilder(t, src, Options{})
	res := build(t, b, Request{Packages: []string{"hello"}})
	out, err := exec.Command(filepath.Join(res.Packages[0].Path, "bin", "hello")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Hello, world!") {
		t.Errorf("hello: %q, %v", out, err)
	}
	// The same package set gives the same store path as the bundled one.
	res2 := build(t, NewBuilder(testBundled(t), Options{}), Request{Packages: []string{"hello"}})
	if res.Packages[0].Path != res2.Packages[0].Path {
		t.Errorf("tarball gave %s, bundled %s", res.Packages[0].Path, res2.Packages[0].Path)
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestBuildGitRepo(t *testing.T) {
	requireNix(t)
	repo := t.TempDir()
	git(t, repo, "init", "-q")
	if err := os.CopyFS(repo, BundledFS()); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "bundled set")
	first := git(t, repo, "rev-parse", "HEAD")
	// A second commit renames hello's package, so the two commits differ.
	def := filepath.Join(repo, "default.nix")
	data, _ := os.ReadFile(def)
	os.WriteFile(def, []byte(strings.Replace(string(data), `pname = "hello"; version = "2.10"`, `pname = "hello"; version = "2.10-second"`, 1)), 0o644)
	git(t, repo, "commit", "-q", "-am", "second")

	src, err := NewGitSource(repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, pinned, _ := src.CacheKey(first); !pinned {
		t.Error("a commit tag is not pinned")
	}
	if _, pinned, _ := src.CacheKey("latest"); pinned {
		t.Error("latest is pinned")
	}
	b, _ := countingBuilder(t, src, Options{})
	old := build(t, b, Request{Packages: []string{"hello"}, Tag: first})
	if got := closure.Name(old.Packages[0].Path); got != "hello-2.10" {
		t.Errorf("tag %s gave %s, want hello-2.10", first, got)
	}
	latest := build(t, b, Request{Packages: []string{"hello"}, Tag: "latest"})
	if got := closure.Name(latest.Packages[0].Path); got != "hello-2.10-second" {
		t.Errorf("latest gave %s, want hello-2.10-second", got)
	}
	branch := build(t, b, Request{Packages: []string{"hello"}, Tag: "main"})
	if branch.Packages[0].Path != latest.Packages[0].Path {
		t.Errorf("branch main gave %s, latest %s", branch.Packages[0].Path, latest.Packages[0].Path)
	}
	// Refs the repository does not have name no image: the error wraps
	// ErrUnknownTag (fs.ErrNotExist) and names the ref, for the working
	// tree and for a bare clone fetched as a remote.
	bare := filepath.Join(t.TempDir(), "bare.git")
	git(t, repo, "clone", "-q", "--bare", repo, bare)
	bareSrc, _ := NewGitSource("file://" + bare)
	for _, b := range []*Builder{b, NewBuilder(bareSrc, Options{Logger: testLogger(t)})} {
		for _, tag := range []string{"0000000000000000000000000000000000000000", "no-such-branch"} {
			_, err = b.Build(context.Background(), Request{Packages: []string{"hello"}, Tag: tag})
			if !errors.Is(err, ErrUnknownTag) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `"`+tag+`"`) {
				t.Errorf("%s: the missing ref %s gave %v, want ErrUnknownTag naming it", b.Source(), tag, err)
			}
		}
	}
}

func TestBuildConcurrent(t *testing.T) {
	requireNix(t)
	b, _ := countingBuilder(t, testBundled(t), Options{MaxConcurrent: 4})
	sets := [][]string{
		{"curl", "jq"}, {"git", "less"}, {"curl", "git"}, {"bashInteractive", "coreutils"},
		{"jq", "hello"}, {"coreutils", "moreutils", "nano"}, {"wget", "curl"}, {"hello"},
	}
	var wg sync.WaitGroup
	results := make([]*Result, len(sets))
	errs := make([]error, len(sets))
	for i, s := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = b.Build(context.Background(), Request{Packages: s})
		}()
	}
	wg.Wait()
	glibcs := map[string]bool{}
	for i, s := range sets {
		if errs[i] != nil {
			t.Errorf("%v: %v", s, errs[i])
			continue
		}
		for j, p := range results[i].Packages {
			if p.Name != s[j] {
				t.Errorf("%v: package %d is %s", s, j, p.Name)
			}
			glibcs[glibcPath(t, results[i].Graph, p.Path)] = true
		}
	}
	if len(glibcs) != 1 {
		t.Errorf("%d different glibcs: %v", len(glibcs), glibcs)
	}
}

// TestBuildGCRoot: a build holds a GC root for its outputs until it is
// released; roots of a process that died are removed by the next one.
func TestBuildGCRoot(t *testing.T) {
	requireNix(t)
	roots := t.TempDir()
	dead := filepath.Join(roots, "0123456789abcdef", "1")
	os.MkdirAll(dead, 0o755)
	os.Symlink("/nix/store/x", filepath.Join(dead, "hello"))
	os.Symlink("/nix/store/y", filepath.Join(roots, "old-layout-root"))
	b, _ := countingBuilder(t, testBundled(t), Options{GCRootDir: roots})
	res := build(t, b, Request{Packages: []string{"hello"}})
	links, _ := filepath.Glob(filepath.Join(roots, "*", "*", "*"))
	if len(links) != 1 {
		t.Fatalf("roots %q, want one", links)
	}
	target, err := os.Readlink(links[0])
	if err != nil || target != res.Packages[0].Path {
		t.Errorf("root points to %q (%v), want %s", target, err, res.Packages[0].Path)
	}
	if _, err := os.Lstat(filepath.Join(roots, "old-layout-root")); err == nil {
		t.Error("a root of the old layout was kept")
	}
	res.Release()
	res.Release()
	if left, _ := filepath.Glob(filepath.Join(roots, "*", "*", "*")); len(left) != 0 {
		t.Errorf("after Release: %q", left)
	}
	// The builder's own directory stays, locked; another builder's first
	// build leaves it alone.
	own, _ := filepath.Glob(filepath.Join(roots, "*.lock"))
	b2, _ := countingBuilder(t, testBundled(t), Options{GCRootDir: roots})
	build(t, b2, Request{Packages: []string{"hello"}}).Release()
	for _, l := range own {
		if _, err := os.Stat(strings.TrimSuffix(l, ".lock")); err != nil {
			t.Errorf("a live builder's root directory was removed: %v", err)
		}
	}
}

// TestBundledMissingDebianPackage: a package whose Debian package is not
// installed fails evaluation with a message that names it and the fix.
func TestBundledMissingDebianPackage(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, BundledFS()); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(dir, "default.nix")
	data, _ := os.ReadFile(def)
	patched := strings.Replace(string(data), `debs = [ "hello" ];`, `debs = [ "nixery-no-such-package" ];`, 1)
	if patched == string(data) {
		t.Fatal("hello's debs not found in default.nix")
	}
	os.WriteFile(def, []byte(patched), 0o644)
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{})
	_, err := b.Build(context.Background(), Request{Packages: []string{"hello"}})
	var be *BuildError
	if !errors.As(err, &be) || be.Op != "evaluate" || !strings.Contains(err.Error(), "nixery-no-such-package is not installed on this host; run .ci/setup") {
		t.Fatalf("err = %v, want an evaluation error naming the Debian package", err)
	}
}

// TestDeletePaths: nix-store --delete removes a store path nobody needs,
// and keeps one a build still holds a root for. The package is made
// unique to the test, so that no other user of the machine's store loses
// a path.
func TestDeletePaths(t *testing.T) {
	requireNix(t)
	dir := t.TempDir()
	seed := strconv.FormatInt(time.Now().UnixNano(), 10)
	expr := `{ ... }: { gcme = derivation { name = "nixery-gc-test-` + seed + `"; system = "x86_64-linux"; builder = "/bin/bash"; args = [ "-c" "echo ` + seed + ` > $out; exit 0" ]; }; }`
	if err := os.WriteFile(filepath.Join(dir, "default.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	src, _ := NewPathSource(dir)
	b, _ := countingBuilder(t, src, Options{GCRootDir: t.TempDir()})
	res := build(t, b, Request{Packages: []string{"gcme"}})
	p := res.Packages[0].Path
	deleted, err := b.DeletePaths(context.Background(), []string{p})
	if err != nil || len(deleted) != 0 {
		t.Errorf("DeletePaths of a rooted path: %v, %v", deleted, err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("a rooted path was deleted: %v", err)
	}
	res.Release()
	deleted, err = b.DeletePaths(context.Background(), []string{p})
	if err != nil || len(deleted) != 1 {
		t.Errorf("DeletePaths after Release: %v, %v", deleted, err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still in the store: %v", p, err)
	}
	if _, err := b.DeletePaths(context.Background(), []string{"/etc/passwd"}); err == nil {
		t.Error("DeletePaths accepted a path outside the store")
	}
}
