package nix

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/nixery-go/nixery/closure"
)

// programChecks lists, for every top-level package of the bundled set that
// has programs, commands to run inside a root holding nothing but the
// package's closure, and text their output must contain. @out@ is the
// package's store path.
var programChecks = map[string][][]string{
	"bashInteractive": {{"bash", "-c", "echo ok-$((6*7))", "ok-42"}, {"sh", "-c", "echo $0", "sh"}},
	"coreutils":       {{"ls", "--version", "GNU coreutils"}, {"sha256sum", "@out@/bin/ls", "@out@/bin/ls"}, {"chroot", "--version", "chroot"}},
	"moreutils":       {{"errno", "ENOENT", "ENOENT 2"}, {"ts", ""}, {"combine", "/dev/null", "and", "/dev/null", ""}},
	"nano":            {{"nano", "--version", "GNU nano, version 7.2"}},
	"less":            {{"less", "--version", "less 590"}},
	"curl":            {{"curl", "--version", "curl 7.88.1"}, {"curl", "-s", "file:///nix/store/", ""}},
	"jq":              {{"jq", "--version", "jq-1.6"}, {"jq", "-n", "[1,2]|add", "3"}},
	"git":             {{"git", "--version", "git version 2.39.5"}, {"git", "init", "/tmp/repo", "Initialized empty Git repository in /tmp/repo/.git/"}},
	"hello":           {{"hello", "Hello, world!"}},
	"gnugrep":         {{"grep", "--version", "GNU grep"}, {"egrep", "--version", "GNU grep"}, {"fgrep", "--version", "GNU grep"}},
	"gnused":          {{"sed", "--version", "GNU sed"}},
	"gawk":            {{"awk", "BEGIN { print 6*7 }", "42"}},
	"findutils":       {{"find", "@out@/bin", "-name", "xargs", "@out@/bin/xargs"}},
	"diffutils":       {{"diff", "--version", "GNU diffutils"}, {"cmp", "@out@/bin/cmp", "@out@/bin/cmp", ""}},
	"gzip":            {{"gzip", "--version", "gzip 1.12"}, {"zcat", "--version", "zcat (gzip)"}, {"gunzip", "--version", "gunzip (gzip)"}},
	"xz":              {{"xz", "--version", "liblzma 5.4.1"}},
	"bzip2":           {{"bzip2", "--help", "Version 1.0.8"}},
	"zstd":            {{"zstd", "--version", "v1.5.4"}},
	"gnutar":          {{"tar", "--version", "GNU tar"}},
	"file":            {{"file", "@out@/bin/.file-wrapped", "ELF 64-bit LSB"}},
	"which":           {{"which", "which", "@out@/bin/which"}},
	"tree":            {{"tree", "--version", "tree v2.1.0"}},
	"sqlite":          {{"sqlite3", ":memory:", "select 6*7", "42"}},
	"openssh":         {{"ssh", "-V", "OpenSSH_9.2p1"}, {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/tmp/k", ""}},
	"wget":            {{"wget", "--version", "GNU Wget 1.21.3"}},
	"perl":            {{"perl", "-MPOSIX", "-MTime::HiRes", "-e", "print POSIX::floor(42.5), qq{\\n}", "42"}},
	"python3":         {{"python3", "-c", "import ssl, sqlite3, json, ctypes, zlib, bz2, lzma, hashlib; print(ssl.OPENSSL_VERSION)", "OpenSSL 3.0."}},
	"openssl":         {{"openssl", "version", "OpenSSL 3.0."}},
}

// dataChecks lists files that data-only packages must provide.
var dataChecks = map[string][]string{
	"cacert":   {"etc/ssl/certs/ca-bundle.crt", "etc/ssl/certs/ca-certificates.crt"},
	"iana-etc": {"etc/services", "etc/protocols"},
	"ncurses":  {"share/terminfo/x/xterm", "share/terminfo/d/dumb"},
}

// topLevelPackages evaluates the bundled set's top-level derivations.
func topLevelPackages(t testing.TB, dir string) []string {
	return topLevelPackagesFor(t, dir, "x86_64-linux")
}

// topLevelPackagesFor evaluates the bundled set's top-level derivations
// for system.
func topLevelPackagesFor(t testing.TB, dir, system string) []string {
	t.Helper()
	cmd := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "--expr",
		`with builtins; let s = import `+dir+` { system = "`+system+`"; }; in filter (n: (s.${n}.type or "") == "derivation") (attrNames s)`)
	cmd.Env = mergeEnv(os.Environ(), DefaultNixConfig)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listing the bundled set: %v", err)
	}
	var names []string
	if err := json.Unmarshal(out, &names); err != nil {
		t.Fatal(err)
	}
	return names
}

// chrootRoot builds a directory holding exactly the given store paths
// (hard-linked, or copied across file systems), plus /dev/null, /tmp and
// an /etc/passwd naming root (ssh refuses to run for a user it cannot
// look up; images that need one add it as a customisation).
func chrootRoot(t *testing.T, paths []string) string {
	t.Helper()
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	for _, d := range []string{store, filepath.Join(root, "dev"), filepath.Join(root, "tmp"), filepath.Join(root, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/tmp:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(root, "dev", "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatalf("mknod /dev/null (the test needs root): %v", err)
	}
	for _, p := range paths {
		// Hard links where the file system allows them, copies otherwise.
		if err := exec.Command("cp", "-al", p, store+"/").Run(); err != nil {
			if out, err := exec.Command("cp", "-a", p, store+"/").CombinedOutput(); err != nil {
				t.Fatalf("copying %s: %v\n%s", p, err, out)
			}
		}
	}
	return root
}

// chrootBundled is the set-up of the chroot tests: Nix, root, and the
// bundled set extracted for the test.
func chrootBundled(t *testing.T) (*BundledSource, string) {
	t.Helper()
	requireNix(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root for chroot")
	}
	src := testBundled(t)
	dir, err := src.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return src, dir
}

// TestBundledProgramsRunInTheirClosure builds every top-level package of
// the bundled set and runs its programs in a chroot holding nothing but
// the package's runtime closure, as a container built from it would: for
// each system of the set, aarch64-linux's programs under the emulator that
// .ci/setup registers with binfmt_misc (with its F flag, so that the chroot
// needs no emulator inside it).
func TestBundledProgramsRunInTheirClosure(t *testing.T) {
	src, dir := chrootBundled(t)
	for _, system := range BundledSystems {
		t.Run(system, func(t *testing.T) {
			if system == "aarch64-linux" {
				requireEmulator(t)
			}
			testProgramsRunInTheirClosure(t, src, dir, system)
		})
	}
}

func testProgramsRunInTheirClosure(t *testing.T, src *BundledSource, dir, system string) {
	names := topLevelPackagesFor(t, dir, system)
	if len(names) < 25 {
		t.Errorf("the bundled set has %d top-level packages, want >= 25", len(names))
	}
	t.Logf("%d top-level packages: %s", len(names), strings.Join(names, " "))
	b, _ := countingBuilder(t, src, Options{Timeout: 10 * 60e9})
	res := build(t, b, Request{Packages: names, System: system})

	for _, p := range res.Packages {
		checks, hasChecks := programChecks[p.Attr]
		files, hasFiles := dataChecks[p.Attr]
		_, err := os.Stat(filepath.Join(p.Path, "bin"))
		if err == nil && !hasChecks {
			t.Errorf("%s has programs but no entry in programChecks", p.Attr)
		}
		if !hasChecks && !hasFiles {
			continue
		}
		paths := res.Graph.Closure(p.Path)
		for _, q := range paths {
			if !strings.HasPrefix(q, closure.StoreDir+"/") {
				t.Fatalf("odd path %s", q)
			}
		}
		t.Run(p.Attr, func(t *testing.T) {
			root := chrootRoot(t, paths)
			for _, f := range files {
				data, err := os.ReadFile(filepath.Join(root, p.Path, f))
				if err != nil || len(data) == 0 {
					t.Errorf("%s: %v", f, err)
				}
			}
			for _, c := range checks {
				args := make([]string, len(c)-1)
				for i, a := range c[:len(c)-1] {
					args[i] = strings.ReplaceAll(a, "@out@", p.Path)
				}
				want := strings.ReplaceAll(c[len(c)-1], "@out@", p.Path)
				cmd := exec.CommandContext(context.Background(), filepath.Join(p.Path, "bin", args[0]), args[1:]...)
				cmd.Env = []string{"PATH=" + p.Path + "/bin", "HOME=/tmp", "TERM=xterm", "LC_ALL=C"}
				cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
				cmd.Dir = "/"
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				if err != nil || !strings.Contains(strings.ToLower(out.String()), strings.ToLower(want)) {
					t.Errorf("%q in a chroot of %d paths: %v, output %q, want %q", args, len(paths), err, out.String(), want)
				}
			}
		})
	}
	if missing := slices.DeleteFunc(mapsKeys(programChecks), func(k string) bool { return slices.Contains(names, k) }); len(missing) > 0 {
		t.Errorf("programChecks names packages not in the set: %v", missing)
	}
}

// requireEmulator fails the test unless binfmt_misc runs aarch64 programs
// (.ci/setup-arm64 registers qemu-user-static's handler).
func requireEmulator(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil || !strings.HasPrefix(string(data), "enabled") || !strings.Contains(string(data), "flags: ") {
		t.Fatalf("no aarch64 emulator registered with binfmt_misc (%v); run .ci/setup", err)
	}
	if flags := strings.SplitN(strings.SplitN(string(data), "flags: ", 2)[1], "\n", 2)[0]; !strings.Contains(flags, "F") {
		t.Fatalf("the aarch64 emulator is registered without the F flag (%q): it cannot run in a chroot", flags)
	}
}

func mapsKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBundledScriptsPointIntoTheStore checks every script of every package
// for a shebang outside the store.
func TestBundledScriptsPointIntoTheStore(t *testing.T) {
	requireNix(t)
	src := testBundled(t)
	dir, err := src.Dir()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := countingBuilder(t, src, Options{Timeout: 10 * 60e9})
	res := build(t, b, Request{Packages: topLevelPackages(t, dir)})
	checked := 0
	for _, p := range res.Graph.Paths() {
		for _, sub := range []string{"bin", "libexec"} {
			entries, _ := os.ReadDir(filepath.Join(p.Path, sub))
			for _, e := range entries {
				f := filepath.Join(p.Path, sub, e.Name())
				data, err := os.ReadFile(f)
				if err != nil || !bytes.HasPrefix(data, []byte("#!")) {
					continue
				}
				checked++
				line, _, _ := bytes.Cut(data, []byte("\n"))
				if !bytes.HasPrefix(line, []byte("#!/nix/store/")) {
					t.Errorf("%s: shebang %q", f, line)
				}
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d scripts checked", checked)
	}
}

// TestBundledTerminfo checks that nano and less find terminal descriptions
// inside their own closures: their wrappers set TERMINFO_DIRS to a
// directory of ncurses' store path that holds xterm's entry.
func TestBundledTerminfo(t *testing.T) {
	requireNix(t)
	b, _ := countingBuilder(t, testBundled(t), Options{})
	res := build(t, b, Request{Packages: []string{"nano", "less"}})
	for _, p := range res.Packages {
		data, err := os.ReadFile(filepath.Join(p.Path, "bin", p.Attr))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(data), "export TERMINFO_DIRS='")
		dir, _, _ := strings.Cut(rest, "'")
		if !ok || !strings.HasPrefix(dir, closure.StoreDir+"/") {
			t.Errorf("%s's wrapper sets no TERMINFO_DIRS:\n%s", p.Attr, data)
			continue
		}
		storePath := strings.Join(strings.SplitN(dir, "/", 5)[:4], "/")
		if !slices.Contains(res.Graph.Closure(p.Path), storePath) {
			t.Errorf("%s: TERMINFO_DIRS %s is outside its closure", p.Attr, dir)
		}
		if _, err := os.Stat(filepath.Join(dir, "x", "xterm")); err != nil {
			t.Errorf("%s: %v", p.Attr, err)
		}
	}
}

// TestBundledELFsResolveInTheirClosure asks glibc's dynamic loader, inside
// a chroot holding only a package's closure, to resolve the libraries of
// every ELF file of the package (programs, libraries, Python and Perl
// extension modules), without running them: none may be missing.
func TestBundledELFsResolveInTheirClosure(t *testing.T) {
	src, dir := chrootBundled(t)
	b, _ := countingBuilder(t, src, Options{Timeout: 10 * 60e9})
	res := build(t, b, Request{Packages: topLevelPackages(t, dir)})
	var loader string
	for _, p := range res.Packages {
		if p.Attr == "glibc" {
			loader = filepath.Join(p.Path, "lib", "ld-linux-x86-64.so.2")
		}
	}
	checked := 0
	for _, p := range res.Packages {
		var elfs []string
		filepath.WalkDir(p.Path, func(f string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), "ld-linux") {
				return err
			}
			fh, err := os.Open(f)
			if err != nil {
				return err
			}
			defer fh.Close()
			magic := make([]byte, 4)
			if n, _ := fh.Read(magic); n == 4 && string(magic) == "\x7fELF" {
				elfs = append(elfs, f)
			}
			return nil
		})
		if len(elfs) == 0 {
			continue
		}
		paths := res.Graph.Closure(p.Path)
		if !slices.Contains(paths, filepath.Dir(filepath.Dir(loader))) {
			t.Errorf("%s has ELF files but glibc is not in its closure", p.Attr)
			continue
		}
		root := chrootRoot(t, paths)
		for _, f := range elfs {
			cmd := exec.Command(loader, "--list", f)
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
			cmd.Dir = "/"
			cmd.Env = []string{}
			out, err := cmd.CombinedOutput()
			checked++
			if err != nil || strings.Contains(string(out), "not found") {
				t.Errorf("%s: %v\n%s", f, err, out)
			}
		}
	}
	t.Logf("%d ELF files resolved", checked)
	if checked < 200 {
		t.Errorf("only %d ELF files checked", checked)
	}
}
