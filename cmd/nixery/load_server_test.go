package main

// The load tests' harness: a `nixery serve` of a generated package set
// (testutil.PackageSet) in a git repository, served at its commit so that
// images are cached by request; clients from distinct loopback addresses;
// a flood driver; checks that every byte served matches its digest; and a
// sampler of the server's RSS and goroutines.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// loadBinary is the nixery binary of the load tests and benchmarks, built
// once per test binary.
var loadBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nixery-load-bin-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return testutil.BuildNixery(ctx, "", dir)
})

// A loadServer serves a generated package set at one commit.
type loadServer struct {
	*testutil.Nixery
	commit string // the tag that pins the set
	dir    string // the server's directory: storage/, server.log
}

// startLoadServer writes set into a git repository, commits it and serves
// it with env added to the server's environment (NIXERY_DEBUG_ADDR is set,
// for Goroutines). It is stopped at cleanup, which fails the test unless
// it shuts down cleanly.
func startLoadServer(t testing.TB, set testutil.PackageSet, env ...string) *loadServer {
	t.Helper()
	testutil.RequireTools(t, "nix-build", "nix-store", "git")
	bin, err := loadBinary()
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if err := set.Write(repo); err != nil {
		t.Fatal(err)
	}
	commit, err := testutil.GitCommit(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := testutil.ServeNixery(t, testutil.NixeryOptions{
		Binary: bin,
		Dir:    dir,
		Env:    append([]string{"NIXERY_PKGS_REPO=" + repo, "NIXERY_DEBUG_ADDR=127.0.0.1:0"}, env...),
	})
	return &loadServer{Nixery: n, commit: commit, dir: dir}
}

// manifestURL is the URL of name's manifest at the set's commit.
func (s *loadServer) manifestURL(name string) string {
	return s.URL("/v2/" + name + "/manifests/" + s.commit)
}

// records returns the image records in the server's index.
func (s *loadServer) records(t testing.TB) []string {
	t.Helper()
	recs, err := filepath.Glob(filepath.Join(s.dir, "storage", "index", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// answer is one response as a load test sees it.
type answer struct {
	status     int
	code       string // the registry error's code, if any
	retryAfter string
	digest     string // Docker-Content-Digest of a 200
	latency    time.Duration
	err        error  // the request failed: the client gave up, say
	wrong      string // what does not match, for a 200 whose bytes are not its digest's
}

// get requests a manifest with a client that gives up after giveUp (none
// if zero) and checks that a 200's bytes hash to its Docker-Content-Digest
// and that a 503 or 429 carries Retry-After.
func get(ctx context.Context, client *http.Client, url string, giveUp time.Duration) answer {
	if giveUp > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, giveUp)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Accept", mediaDockerManifest)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err, latency: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, latency: time.Since(start), err: err,
		retryAfter: resp.Header.Get("Retry-After"), digest: resp.Header.Get("Docker-Content-Digest")}
	if err != nil {
		return a
	}
	switch resp.StatusCode {
	case http.StatusOK:
		sum := sha256.Sum256(body)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != a.digest || resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
			a.wrong = fmt.Sprintf("%s: %d bytes hashing to %s served as %s", url, len(body), got, a.digest)
		}
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		if a.retryAfter == "" {
			a.wrong = fmt.Sprintf("%s: %d without Retry-After", url, resp.StatusCode)
		}
		fallthrough
	default:
		var e struct{ Errors []struct{ Code string } }
		if jsonErr := json.Unmarshal(body, &e); jsonErr != nil || len(e.Errors) != 1 {
			a.wrong = fmt.Sprintf("%s: %d with body %.200q", url, resp.StatusCode, body)
		} else {
			a.code = e.Errors[0].Code
		}
	}
	return a
}

// checkImage fetches name's manifest and every blob it names, checking
// each against its digest.
func (s *loadServer) checkImage(t testing.TB, client *http.Client, name string) *testutil.Manifest {
	t.Helper()
	m, err := testutil.GetManifest(t.Context(), client, s.manifestURL(name), mediaDockerManifest)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("Docker-Content-Digest"); got != m.Digest.String() {
		t.Errorf("%s: manifest served as %s hashes to %s", name, got, m.Digest)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		resp, err := client.Get(s.URL("/v2/" + name + "/blobs/" + d.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := v1.SHA256(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || h != d.Digest || n != d.Size {
			t.Errorf("%s: blob %s: status %d, %d bytes hashing to %s (%v)", name, d.Digest, resp.StatusCode, n, h, err)
		}
	}
	return m
}

// tally counts a flood's answers.
type tally struct {
	mu       sync.Mutex
	statuses map[int]int
	codes    map[string]int
	gaveUp   int
	wrong    []string
	busy     []time.Duration // latencies of the 503s
	digests  map[string]int  // of the 200s
}

func (ty *tally) add(a answer) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	if ty.statuses == nil {
		ty.statuses, ty.codes, ty.digests = map[int]int{}, map[string]int{}, map[string]int{}
	}
	switch {
	case a.wrong != "":
		ty.wrong = append(ty.wrong, a.wrong)
	case a.err != nil:
		ty.gaveUp++
		return
	}
	ty.statuses[a.status]++
	if a.code != "" {
		ty.codes[a.code]++
	}
	if a.status == http.StatusServiceUnavailable {
		ty.busy = append(ty.busy, a.latency)
	}
	if a.status == http.StatusOK {
		ty.digests[a.digest]++
	}
}

func (ty *tally) String() string {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	return fmt.Sprintf("statuses %v, codes %v, gave up %d, wrong %d, %d digests", ty.statuses, ty.codes, ty.gaveUp, len(ty.wrong), len(ty.digests))
}

// A flood is many clients asking for many names.
type flood struct {
	clients int           // concurrent clients, each on its own loopback address
	firstIP int           // the index (testutil.LoopbackIP) of the first client's
	giveUp  time.Duration // a client gives up on a request after this; 0: never
	retry   time.Duration // a client asks again for a name that got a 503 after this; 0: never
}

// run sends the names, each client its next request when its last was
// answered, and counts the answers (a retried 503 counts too).
func (f flood) run(ctx context.Context, s *loadServer, names []string) *tally {
	ty := &tally{}
	next := make(chan string)
	go func() {
		defer close(next)
		for _, n := range names {
			select {
			case next <- n:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := testutil.ClientFrom(testutil.LoopbackIP(f.firstIP + i))
			defer c.CloseIdleConnections()
			for n := range next {
				for {
					a := get(ctx, c, s.manifestURL(n), f.giveUp)
					ty.add(a)
					if a.status != http.StatusServiceUnavailable || f.retry == 0 || ctx.Err() != nil {
						break
					}
					time.Sleep(f.retry)
				}
			}
		}()
	}
	wg.Wait()
	return ty
}

// serverUsage samples the server's RSS and goroutines until stop.
type serverUsage struct {
	stop       func()
	mu         sync.Mutex
	peakRSS    int64
	goroutines int // the most seen
	samples    int
	err        error
}

func (s *loadServer) sample(every time.Duration) *serverUsage {
	u := &serverUsage{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	u.stop = func() { cancel(); <-done }
	go func() {
		defer close(done)
		for {
			_, peak, err := s.RSS()
			g, gerr := s.Goroutines(ctx)
			u.mu.Lock()
			if err == nil && gerr == nil {
				u.peakRSS, u.goroutines = max(u.peakRSS, peak), max(u.goroutines, g)
				u.samples++
			} else if ctx.Err() == nil {
				u.err = errors.Join(err, gerr)
			}
			u.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
	return u
}

// idleGoroutines returns how many goroutines the server runs when it has
// been left alone for half a second.
func (s *loadServer) idleGoroutines(t testing.TB) int {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	g, err := s.Goroutines(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// settle waits until the server runs at most want goroutines, for up to
// a minute, and returns the last count.
func (s *loadServer) settle(t testing.TB, want int) int {
	t.Helper()
	var g int
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var err error
		if g, err = s.Goroutines(t.Context()); err != nil {
			t.Fatal(err)
		}
		if g <= want {
			break
		}
	}
	return g
}

// percentile returns the p-th percentile (0 to 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

// countLog counts the lines of the server's log since mark that hold
// every one of subs.
func (s *loadServer) countLog(mark int, subs ...string) int {
	n := 0
	for _, line := range strings.Split(s.LogSince(mark), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			n++
		}
	}
	return n
}
