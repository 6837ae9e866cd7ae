package main

// The storage half of the fault-injection suite: a real `nixery serve`
// (the real Nix, the bundled package set) whose storage is damaged under
// it. Every body a test gets is checked against its digest; the server
// must recover without a restart where it can; at the end its goroutines
// (counted from the stack dump SIGQUIT makes) and RSS must be bounded.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// Bounds every fault test checks at its end.
const (
	faultMaxGoroutines = 100
	faultMaxRSS        = 300 << 20
)

// A faultServer is a `nixery serve` under test with the client that checks
// its answers.
type faultServer struct {
	*testutil.Nixery
	t       *testing.T
	storage string
	p       *testutil.Puller
	maxRSS  atomic.Int64 // the server's own RSS, sampled every 50 ms
}

// startFault starts a server with storage in dir (dir/storage, or the
// STORAGE_PATH of env) and the given environment, built from bin. At
// cleanup it is killed if the test did not end it, and its log is shown
// if the test failed.
func startFault(t *testing.T, bin, dir string, env ...string) *faultServer {
	t.Helper()
	n, err := testutil.StartNixery(t.Context(), testutil.NixeryOptions{Binary: bin, Dir: dir, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	s := &faultServer{Nixery: n, t: t, storage: filepath.Join(dir, "storage")}
	s.p = &testutil.Puller{Client: n.Client, Base: n.URL(""), Wrong: func(path, got, want string) {
		t.Errorf("GET %s: the body hashes to %s, served as %s", path, got, want)
	}}
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "STORAGE_PATH="); ok {
			s.storage = v
		}
	}
	go func() {
		for {
			select {
			case <-n.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			if rss := procStatus(n.Pid(), "VmRSS") << 10; rss > s.maxRSS.Load() {
				s.maxRSS.Store(rss)
			}
		}
	}()
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			t.Logf("server log %s (last lines):\n%s", n.LogPath, testutil.Tail(n.Log(), 80))
		}
	})
	return s
}

// get is the Puller's checked GET.
func (s *faultServer) get(ctx context.Context, path, accept string) (int, []byte, error) {
	return s.p.Get(ctx, path, accept)
}

func (s *faultServer) pull(ctx context.Context, name string) (*v1.Manifest, error) {
	return s.p.Pull(ctx, name)
}

func (s *faultServer) mustPull(name string) *v1.Manifest {
	s.t.Helper()
	m, err := s.pull(s.t.Context(), name)
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// blobFile is the file of a blob in the server's store.
func (s *faultServer) blobFile(d v1.Hash) string {
	return filepath.Join(s.storage, "store", "blobs", "sha256", d.Hex)
}

// waitLog waits until the server's log after mark matches re.
func (s *faultServer) waitLog(mark int, re string, within time.Duration) bool {
	s.t.Helper()
	return s.WaitLog(mark, regexp.MustCompile(re), within)
}

// nixRuns counts the Nix processes the server ran after mark.
func (s *faultServer) nixRuns(mark int) int {
	return strings.Count(s.LogSince(mark), `msg="nix command"`)
}

// procStatus reads a field of /proc/<pid>/status, in kB for sizes.
func procStatus(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return -1
}

var goroutineHeader = regexp.MustCompile(`(?m)^goroutine \d+ [^\n]*\[`)

// end checks that no body was wrong and that the server's goroutines and
// RSS are bounded: it reads the RSS, then sends SIGQUIT, which makes the Go
// runtime print every goroutine and exit, and counts them.
func (s *faultServer) end() {
	s.t.Helper()
	if s.p.Checked() == 0 {
		s.t.Error("no body was checked")
	}
	if w := s.p.WrongBodies(); w != 0 {
		s.t.Errorf("%d of %d bodies did not match their digests", w, s.p.Checked())
	}
	rss := procStatus(s.Pid(), "VmRSS") << 10
	threads := procStatus(s.Pid(), "Threads")
	mark := s.Mark()
	syscall.Kill(s.Pid(), syscall.SIGQUIT)
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		s.t.Fatal("the server did not exit on SIGQUIT")
	}
	time.Sleep(100 * time.Millisecond) // the last of the dump
	g := len(goroutineHeader.FindAllString(s.LogSince(mark), -1))
	// PeakRSS (ru_maxrss of the waited process) counts the Nix processes
	// the server ran too; the sampled RSS is the server's own.
	s.t.Logf("%d bodies checked, 0 wrong; at the end: %d goroutines, %d threads, RSS %.1f MiB; sampled peak %.1f MiB (with Nix children %.1f MiB)",
		s.p.Checked(), g, threads, float64(rss)/(1<<20), float64(s.maxRSS.Load())/(1<<20), float64(s.PeakRSS())/(1<<20))
	if g == 0 || g > faultMaxGoroutines {
		s.t.Errorf("%d goroutines at the end, want 1 to %d", g, faultMaxGoroutines)
	}
	if rss <= 0 || rss > faultMaxRSS || s.maxRSS.Load() > faultMaxRSS {
		s.t.Errorf("RSS %d, sampled peak %d bytes; want under %d", rss, s.maxRSS.Load(), faultMaxRSS)
	}
}

// damage changes a blob file in place: "truncate" keeps its first n bytes,
// "corrupt" flips a bit in the middle, keeping its length and (like bit
// rot) its modification time, "delete" removes it.
func damage(t *testing.T, file, how string, n int64) {
	t.Helper()
	if how == "delete" {
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		return
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Chtimes(file, fi.ModTime(), fi.ModTime())
	defer f.Close()
	switch how {
	case "truncate":
		err = f.Truncate(n)
	case "corrupt":
		b := make([]byte, 1)
		f.ReadAt(b, fi.Size()/2)
		b[0] ^= 0x10
		_, err = f.WriteAt(b, fi.Size()/2)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func requireFaultTools(t *testing.T) string {
	t.Helper()
	testutil.RequireTools(t, "go", "nix-store", "nix-instantiate", "nix")
	return testutil.NixeryBinary(t)
}

// TestFaultBlobs damages the blobs of a served image (truncated to
// 1,000,000 bytes as in issue 9, corrupted at the same length, deleted;
// layers, the config and a manifest blob), each after it was served:
// the damaged one's request fails with a 5xx, the retry gets the right
// bytes, nothing is built with Nix again, and the manifests stay right.
// Then, after a restart, a blob that rotted while the server was down is
// found and rebuilt by the scrub before anyone asks for it.
func TestFaultBlobs(t *testing.T) {
	bin := requireFaultTools(t)
	dir := t.TempDir()
	s := startFault(t, bin, dir)
	ctx := t.Context()
	m := s.mustPull("git")
	big := m.Layers[0]
	for _, l := range m.Layers {
		if l.Size > big.Size {
			big = l
		}
	}
	if big.Size < 2_000_000 {
		t.Fatalf("the largest layer of git has %d bytes; the test wants one over 2 MB", big.Size)
	}
	_, ociBody, _ := s.get(ctx, "/v2/git/manifests/latest", "application/vnd.oci.image.manifest.v1+json")
	oci := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(ociBody))}
	mark := s.Mark()
	for _, c := range []struct {
		what string
		h    v1.Hash
		how  string
		n    int64
	}{
		{"a layer cut to 1,000,000 bytes", big.Digest, "truncate", 1_000_000},
		{"a layer corrupted", big.Digest, "corrupt", 0},
		{"another layer corrupted", m.Layers[len(m.Layers)-2].Digest, "corrupt", 0},
		{"the customisation layer corrupted", m.Layers[len(m.Layers)-1].Digest, "corrupt", 0},
		{"the config corrupted", m.Config.Digest, "corrupt", 0},
		{"the OCI manifest's blob corrupted", oci, "corrupt", 0},
		{"a layer deleted", big.Digest, "delete", 0},
		{"the config deleted", m.Config.Digest, "delete", 0},
	} {
		path := "/v2/git/blobs/" + c.h.String()
		if status, _, err := s.get(ctx, path, ""); err != nil || status != 200 {
			t.Fatalf("%s, before: %d %v", c.what, status, err)
		}
		damage(t, s.blobFile(c.h), c.how, c.n)
		status, body, err := s.get(ctx, path, "")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case c.how == "delete" && status != 200:
			t.Errorf("%s: %d %s, want the rebuilt blob", c.what, status, body)
		case c.how != "delete" && status < 500:
			t.Errorf("%s: %d, want a 5xx", c.what, status)
		}
		if status, _, _ := s.get(ctx, path, ""); status != 200 {
			t.Errorf("%s: the retry got %d", c.what, status)
		}
	}
	// The manifest, by tag and by digest, is right while its blob is
	// rebuilt, and the image pulls whole, without Nix.
	if status, _, _ := s.get(ctx, "/v2/git/manifests/"+oci.String(), ""); status != 200 {
		t.Errorf("the OCI manifest by digest: %d", status)
	}
	s.mustPull("git")
	if runs := s.nixRuns(mark); runs != 0 {
		t.Errorf("the repairs ran Nix %d times", runs)
	}
	if q, _ := filepath.Glob(filepath.Join(s.storage, "store", "quarantine", "*")); len(q) != 6 {
		t.Errorf("%d blobs quarantined, want 6", len(q))
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// Rot while the server is down: the next server's first look at the
	// blob is the scrub's, which rebuilds it; no request sees a 5xx.
	rotten := m.Layers[1].Digest
	damage(t, s.blobFile(rotten), "corrupt", 0)
	s = startFault(t, bin, dir, "NIXERY_SCRUB_RATE=1GB")
	if !s.waitLog(0, `msg=scrub .*damaged=1 repaired=1`, time.Minute) {
		t.Fatal("the scrub did not find and rebuild the rotten blob")
	}
	if status, _, _ := s.get(ctx, "/v2/git/blobs/"+rotten.String(), ""); status != 200 {
		t.Errorf("the scrubbed blob: %d", status)
	}
	s.mustPull("git")
	s.end()
}

// TestFaultStateFiles damages the state files while the server is down:
// records (garbage, cut short), the last-requested times, the popularity
// cache (cut short), and a layer blob an intact record names. The next
// server drops what it cannot trust, recomputes the popularity, rebuilds
// the missing blob, and serves every image with the same digests.
func TestFaultStateFiles(t *testing.T) {
	bin := requireFaultTools(t)
	dir := t.TempDir()
	s := startFault(t, bin, dir)
	names := []string{"hello", "curl/jq", "git"}
	digests := map[string]string{}
	manifests := map[string]*v1.Manifest{}
	for _, n := range names {
		manifests[n] = s.mustPull(n)
		_, body, _ := s.get(t.Context(), "/v2/"+n+"/manifests/latest", testutil.MediaTypeDockerManifest)
		digests[n] = fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	records := map[string]string{} // name -> record file
	files, _ := filepath.Glob(filepath.Join(s.storage, "index", "*.json"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, n := range names {
			for _, l := range manifests[n].Layers[len(manifests[n].Layers)-1:] {
				if bytes.Contains(b, []byte(l.Digest.String())) {
					records[n] = f
				}
			}
		}
	}
	if len(records) != 3 {
		t.Fatalf("records %v", records)
	}
	os.WriteFile(records["hello"], []byte("{not json"), 0o644)
	b, _ := os.ReadFile(records["curl/jq"])
	os.WriteFile(records["curl/jq"], b[:len(b)/2], 0o644)
	os.WriteFile(filepath.Join(s.storage, "index", ".last-requested"), []byte("\x00\x01garbage"), 0o644)
	pops, _ := filepath.Glob(filepath.Join(s.storage, "popularity", "*.json"))
	if len(pops) != 1 {
		t.Fatalf("popularity files %q", pops)
	}
	p, _ := os.ReadFile(pops[0])
	os.WriteFile(pops[0], p[:100], 0o644)
	lost := manifests["git"].Layers[0].Digest
	damage(t, s.blobFile(lost), "delete", 0)

	s = startFault(t, bin, dir)
	for _, want := range []string{
		`msg="dropping damaged image record"(.|\n)*msg="dropping damaged image record"`,
		`msg="ignoring a damaged last-requested file"`,
		`msg="recomputing a damaged popularity file"`,
		`msg="rebuilt a blob" digest=` + lost.String(),
	} {
		if !s.waitLog(0, want, 30*time.Second) {
			t.Errorf("the log lacks %s", want)
		}
	}
	for _, n := range names {
		s.mustPull(n)
		_, body, _ := s.get(t.Context(), "/v2/"+n+"/manifests/latest", testutil.MediaTypeDockerManifest)
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(body)); got != digests[n] {
			t.Errorf("%s: %s after the damage, %s before", n, got, digests[n])
		}
	}
	s.end()
}

// TestFaultKill kills the server with SIGKILL while it writes a layer;
// the next server on the same storage removes what the killed one left
// (temporary files, GC roots) and builds the image whole.
func TestFaultKill(t *testing.T) {
	bin := requireFaultTools(t)
	dir := t.TempDir()
	s := startFault(t, bin, dir)
	tmpDirs := []string{filepath.Join(s.storage, "store", "tmp"), filepath.Join(s.storage, "layer-cache", "tmp")}
	partial := func() (n int, bytes int64) {
		for _, d := range tmpDirs {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if fi, err := e.Info(); err == nil {
					n++
					bytes += fi.Size()
				}
			}
		}
		return n, bytes
	}
	go s.get(context.Background(), "/v2/python3/manifests/latest", "")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, b := partial(); b > 256<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no layer was being written within 2 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	n, _ := partial()
	roots, _ := filepath.Glob(filepath.Join(s.storage, "gcroots", "*", "*"))
	if n == 0 || len(roots) == 0 {
		t.Fatalf("the kill left %d temporary files and GC roots %q: it did not happen mid-build", n, roots)
	}
	s = startFault(t, bin, dir)
	if n, _ := partial(); n != 0 {
		t.Errorf("%d temporary files left after the restart", n)
	}
	s.mustPull("python3")
	if left, _ := filepath.Glob(filepath.Join(s.storage, "gcroots", "*", "*")); len(left) != 0 {
		t.Errorf("GC roots left: %q", left)
	}
	s.end()
}

// TestFaultDiskFull serves from a 64 MiB tmpfs until the disk is full: a
// build that cannot write answers a 5xx and leaves no temporary file, every
// image served before is still right, the server frees space by itself (a
// collection under pressure, without a limit) and builds again without a
// restart.
func TestFaultDiskFull(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "mount", "umount")
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	os.MkdirAll(storage, 0o755)
	testutil.MountTmpfs(t, storage, 64<<20)
	// Two layers an image (its closure, then the customisation layer):
	// every image writes its whole closure, so the disk fills in a few.
	s := startFault(t, bin, dir, "NIXERY_MAX_LAYERS=2")
	s.p.ManifestTries = 1 // see the failure
	images := []string{"hello", "git", "python3", "perl", "openssh", "curl/jq", "gnutls/wget", "krb5/sqlite", "gawk/less/tree", "openldap/nano", "zstd/xz", "moreutils/which"}
	var ok []string
	failed := ""
	for _, name := range images {
		_, err := s.pull(t.Context(), name)
		if err == nil {
			ok = append(ok, name)
			continue
		}
		if !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("%s: %v; want a failure for want of space", name, err)
		}
		failed = name
		break
	}
	if failed == "" {
		t.Fatalf("the disk never filled up after %v", ok)
	}
	t.Logf("served %v, then %s failed for want of space", ok, failed)
	if !s.waitLog(0, `msg="garbage collection".*disk_full=true`, 30*time.Second) {
		t.Error("no collection under pressure")
	}
	time.Sleep(200 * time.Millisecond)
	for _, d := range []string{"store/tmp", "layer-cache/tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(storage, d)); len(ents) != 0 {
			t.Errorf("%s holds %d temporary files after the failure", d, len(ents))
		}
	}
	// Without a restart: the image that failed builds once there is room
	// (each failure frees a fifth more), and the last one served before is
	// still right.
	s.p.ManifestTries = 0
	var err error
	for attempt := 1; attempt <= 8; attempt++ {
		if _, err = s.pull(t.Context(), failed); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Errorf("%s never built again: %v", failed, err)
	}
	if _, err := s.pull(t.Context(), ok[len(ok)-1]); err != nil {
		t.Errorf("an image served before the disk filled up: %v", err)
	}
	s.end()
}

// twoLimit is the storage limit of TestFaultTwoProcesses: a few images.
const twoLimit = 40_000_000

// TestFaultTwoProcesses runs two servers on one storage directory with a
// storage limit low enough that both collect all the time, while clients
// pull distinct and shared images from both at once: no body is wrong, no
// pull fails, and the storage stays bounded.
func TestFaultTwoProcesses(t *testing.T) {
	bin := requireFaultTools(t)
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	env := []string{"STORAGE_PATH=" + shared, "NIXERY_STORAGE_LIMIT=" + strconv.Itoa(twoLimit)}
	a := startFault(t, bin, filepath.Join(dir, "a"), env...)
	b := startFault(t, bin, filepath.Join(dir, "b"), env...)
	images := []string{"hello", "git", "python3", "perl", "openssh", "curl/jq", "gnutls/wget", "krb5/sqlite", "gawk/less/tree", "openldap/nano", "zstd/xz", "git/jq"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var peak, largest int64
	for i, s := range []*faultServer{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range images {
				name := images[(j+i*len(images)/2)%len(images)] // b starts half-way through
				m, err := s.pull(context.Background(), name)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					n := m.Config.Size
					for _, l := range m.Layers {
						n += l.Size
					}
					largest = max(largest, n)
				}
				mu.Unlock()
				if n, _ := testutil.DirBytes(shared); n > 0 {
					mu.Lock()
					peak = max(peak, n)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("pulls failed: %v", err)
	}
	for _, s := range []*faultServer{a, b} {
		if !strings.Contains(s.Log(), `msg="garbage collection"`) {
			t.Errorf("%s never collected", s.Addr)
		}
	}
	// While both build, each may add an image's blobs and as much again
	// of layer cache before it collects; once both have collected, each
	// keeps at most the limit and the image it served last.
	time.Sleep(2 * time.Second)
	final, _ := testutil.DirBytes(shared)
	t.Logf("storage peaked at %.1f MB, %.1f MB at the end (limit %d MB, largest image %.1f MB)",
		float64(peak)/1e6, float64(final)/1e6, twoLimit/1_000_000, float64(largest)/1e6)
	if peak > twoLimit+4*largest {
		t.Errorf("storage reached %d bytes, more than the limit and two builds", peak)
	}
	if final > twoLimit+largest {
		t.Errorf("storage holds %d bytes after the collections, more than the limit and an image", final)
	}
	// The most recent images are whole, from either server.
	for _, s := range []*faultServer{a, b} {
		s.mustPull(images[len(images)-1])
	}
	a.end()
	b.end()
}
