package main

// Load faults against a real `nixery serve` with the real Nix: clients
// that stall while reading a blob, floods of distinct names and of case
// variants of one name, a full build queue and a client over its limit.
// In each, no response carries bytes that do not match its digest, the
// server recovers without a restart, and its goroutines and RSS stay
// bounded. The package set is generated (testutil.PackageSet): packages of
// one file each, so that hundreds of images cost seconds; a few big or
// slow ones where a test needs them. The flood's figures are measured by
// BenchmarkFlood.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// maxRSS bounds the server's peak RSS in every load test.
const maxRSS = 300 << 20

// TestLoadStalledReaders: clients that request a big blob and stop
// reading lose their connections after the write timeout, while a client
// that reads slowly, below a chunk per timeout, gets the whole blob, and
// the server's goroutines come back down.
func TestLoadStalledReaders(t *testing.T) {
	const size = 8 << 20
	const writeTimeout = 2 * time.Second
	s := startLoadServer(t, testutil.PackageSet{Big: map[string]int64{"big": size}}, fmt.Sprint("NIXERY_WRITE_TIMEOUT=", writeTimeout))
	client := testutil.ClientFrom(testutil.LoopbackIP(0))
	m := s.checkImage(t, client, "big")
	var blob v1.Descriptor
	for _, l := range m.Layers {
		if l.Size > blob.Size {
			blob = l
		}
	}
	if blob.Size < size {
		t.Fatalf("no layer of the big package's %d bytes: %v", size, m.Layers)
	}
	idle := s.idleGoroutines(t)
	u := s.sample(100 * time.Millisecond)

	request := func(ip int) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(testutil.LoopbackIP(ip))}}
		c, err := d.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		fmt.Fprintf(c, "GET /v2/big/blobs/%s HTTP/1.1\r\nHost: %s\r\n\r\n", blob.Digest, s.Addr)
		return c
	}
	var stalled []net.Conn
	for i := range 10 {
		c := request(10 + i)
		defer c.Close()
		stalled = append(stalled, c)
	}
	// The slow reader takes 64 KB every 25 ms, 2.6 MB/s: its blob takes
	// one and a half write timeouts. (Slower readers than that, more slowly than
	// a chunk per timeout, are the unit test's, registry's
	// TestWriteDeadlines: here the kernel's send buffer of a few MB
	// wakes the writer only when a third of it is free.)
	slow := request(1)
	defer slow.Close()
	got := make(chan error, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(&testutil.PacedReader{R: slow, N: 64 << 10, Pause: 25 * time.Millisecond}), nil)
		if err != nil {
			got <- err
			return
		}
		h, n, err := v1.SHA256(resp.Body)
		if err == nil && (h != blob.Digest || n != blob.Size) {
			err = fmt.Errorf("%d bytes hashing to %s", n, h)
		}
		got <- err
	}()
	time.Sleep(3 * writeTimeout) // the stalled connections time out
	for i, c := range stalled {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if n >= blob.Size || err != nil && !strings.Contains(err.Error(), "connection reset") {
			t.Errorf("stalled reader %d: %d bytes of %d (%v): not cut off", i, n, blob.Size, err)
		}
	}
	if err := <-got; err != nil {
		t.Errorf("the slow reader: %v", err)
	}
	u.stop()
	if u.err != nil || u.samples == 0 {
		t.Fatalf("sampling the server: %v", u.err)
	}
	t.Logf("idle %d goroutines, at most %d with 11 readers; peak RSS %.1f MiB", idle, u.goroutines, float64(u.peakRSS)/(1<<20))
	if u.peakRSS > maxRSS {
		t.Errorf("peak RSS %d MiB", u.peakRSS>>20)
	}
	// Recovery: the goroutines of the cut connections are gone, and the
	// blob is served whole.
	if g := s.settle(t, idle+5); g > idle+5 {
		t.Errorf("%d goroutines after the stalled readers, %d before", g, idle)
	}
	s.checkImage(t, client, "big")
}

// TestLoadFlood floods a server of two build slots and a queue of four
// with distinct cold names, then case variants of one name, fills the
// queue with slow builds, and sends one client over its limit of two
// cold requests, checking every answer and the server's usage, and that it
// serves as before afterwards.
func TestLoadFlood(t *testing.T) {
	const names = 300
	set := testutil.PackageSet{
		Small: append(testutil.SmallNames("p", names), "flooded"),
		Slow:  map[string]time.Duration{},
		Nonce: fmt.Sprint(time.Now().UnixNano()), // slow packages must be slow each run
	}
	for i := range 9 {
		set.Slow[fmt.Sprint("slow", i)] = 2 * time.Second
	}
	// The distinct names' builds take a second, longer than their clients
	// wait: a build that reaches the queue has lost its clients before a
	// slot frees (with the small packages, a fast machine built the queue
	// within the wait, and nothing was cancelled).
	flooded := testutil.SmallNames("q", names)
	for _, n := range flooded {
		set.Slow[n] = time.Second
	}
	s := startLoadServer(t, set, "NIXERY_MAX_BUILDS=2", "NIXERY_MAX_QUEUE=4", "NIXERY_MAX_CLIENT_BUILDS=2")
	client := testutil.ClientFrom(testutil.LoopbackIP(0))
	s.checkImage(t, client, "p0")
	idle := s.idleGoroutines(t)
	u := s.sample(100 * time.Millisecond)
	defer u.stop()

	t.Run("DistinctNames", func(t *testing.T) {
		// 50 clients that give up after 300 ms, less than a build takes:
		// queued builds are abandoned and must not run.
		mark := s.Mark()
		before := len(s.records(t))
		ty := flood{clients: 50, firstIP: 100, giveUp: 300 * time.Millisecond}.run(t.Context(), s, flooded)
		t.Logf("%d names: %s", names, ty)
		checkTally(t, ty)
		if ty.statuses[503] == 0 || ty.codes["UNAVAILABLE"] != ty.statuses[503] {
			t.Errorf("no 503 UNAVAILABLE from a full queue: %s", ty)
		}
		s.quiet(t, idle)
		// A build that was running when its clients left finishes, for
		// the cache: wait for each evaluation's build line.
		evaluated, built := 0, 0
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			evaluated = s.countLog(mark, `msg="nix command"`, "op=evaluate")
			built = s.countLog(mark, "msg=build ")
			if evaluated <= built+s.countLog(mark, `msg="build failed"`) || time.Now().After(deadline) {
				break
			}
		}
		cancelled := s.countLog(mark, `msg="build cancelled"`)
		t.Logf("Nix evaluated %d requests, %d images built, %d queued builds cancelled", evaluated, built, cancelled)
		if evaluated > names/3 || cancelled == 0 {
			t.Errorf("%d names from clients that gave up: Nix evaluated %d, %d cancelled; want few evaluations and some cancelled", names, evaluated, cancelled)
		}
		if got := len(s.records(t)) - before; got != built {
			t.Errorf("%d records written for %d images built", got, built)
		}
	})

	t.Run("CaseVariants", func(t *testing.T) {
		var variants []string
		for i := range 1 << len("flooded") {
			var b strings.Builder
			for j, r := range "flooded" {
				if i&(1<<j) != 0 {
					r -= 'a' - 'A'
				}
				b.WriteRune(r)
			}
			variants = append(variants, b.String())
		}
		// Docker sends names in lower case; other clients send any case.
		before := s.recordsOf(t, "flooded")
		ty := flood{clients: 50, firstIP: 200}.run(t.Context(), s, variants)
		t.Logf("%d spellings: %s", len(variants), ty)
		checkTally(t, ty)
		s.quiet(t, idle)
		if ty.statuses[200] == 0 || len(ty.digests) != 1 {
			t.Errorf("the spellings of one package gave %d digests: %v", len(ty.digests), ty.digests)
		}
		// Only the records of flooded count: a build of DistinctNames that
		// had a Nix slot may still save its record now.
		if got := s.recordsOf(t, "flooded") - before; got != 1 {
			t.Errorf("%d records for the spellings of one package", got)
		}
	})

	t.Run("ClientLimit", func(t *testing.T) {
		// One client holds its two cold requests; a third is a 429, and
		// its requests for a cached image are all served, 64 at once.
		one := testutil.ClientFrom(testutil.LoopbackIP(1))
		one.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
		defer one.CloseIdleConnections()
		var wg sync.WaitGroup
		answers := make(chan answer, 2)
		for _, n := range []string{"slow0", "slow1"} {
			wg.Add(1)
			go func() { defer wg.Done(); answers <- get(t.Context(), one, s.manifestURL(n), 0) }()
		}
		s.waitLog(t, 2, "slow0", "slow1")
		if a := get(t.Context(), one, s.manifestURL("slow2"), 0); a.status != 429 || a.code != "TOOMANYREQUESTS" || a.retryAfter == "" {
			t.Errorf("a third cold request: %+v", a)
		}
		ty := &tally{}
		var cached sync.WaitGroup
		for range 64 {
			cached.Add(1)
			go func() { defer cached.Done(); ty.add(get(t.Context(), one, s.manifestURL("p0"), 0)) }()
		}
		cached.Wait()
		if ty.statuses[200] != 64 {
			t.Errorf("64 requests for a cached image from a client at its limit: %s", ty)
		}
		wg.Wait()
		close(answers)
		for a := range answers {
			if a.status != 200 || a.wrong != "" {
				t.Errorf("a cold request within the limit: %+v", a)
			}
		}
	})

	t.Run("FullQueue", func(t *testing.T) {
		// Six slow builds fill two slots and the queue of four; the next
		// request is a 503 with Retry-After, and once they are done the
		// server builds again.
		var wg sync.WaitGroup
		answers := make(chan answer, 6)
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := testutil.ClientFrom(testutil.LoopbackIP(20 + i))
				defer c.CloseIdleConnections()
				answers <- get(t.Context(), c, s.manifestURL(fmt.Sprint("slow", 3+i)), 0)
			}()
		}
		s.waitLog(t, 2, "slow3", "slow4", "slow5", "slow6", "slow7", "slow8")
		time.Sleep(500 * time.Millisecond) // the other four reach the queue
		probe := testutil.ClientFrom(testutil.LoopbackIP(30))
		defer probe.CloseIdleConnections()
		a := get(t.Context(), probe, s.manifestURL("p299"), 0)
		if a.status != 503 || a.code != "UNAVAILABLE" || a.retryAfter == "" {
			t.Errorf("a request when the queue is full: %+v", a)
		}
		wg.Wait()
		close(answers)
		for a := range answers {
			if a.status != 200 || a.wrong != "" {
				t.Errorf("a slow build in the queue: %+v", a)
			}
		}
		s.checkImage(t, client, "p299")
	})

	t.Run("MissingRef", func(t *testing.T) {
		for _, tag := range []string{"no-such-branch", strings.Repeat("0", 40)} {
			r := testutil.Do(t, client, "GET", s.URL("/v2/p1/manifests/"+tag), nil)
			if code, msg := r.RegistryError(t); r.Status != 404 || code != "MANIFEST_UNKNOWN" || !strings.Contains(msg, tag) {
				t.Errorf("tag %s: %d %s %q", tag, r.Status, code, msg)
			}
		}
	})

	u.stop()
	if u.err != nil || u.samples == 0 {
		t.Fatalf("sampling the server: %v", u.err)
	}
	t.Logf("idle %d goroutines, at most %d under load; peak RSS %.1f MiB", idle, u.goroutines, float64(u.peakRSS)/(1<<20))
	if u.peakRSS > maxRSS || u.goroutines > idle+600 {
		t.Errorf("peak RSS %d MiB, %d goroutines (%d idle)", u.peakRSS>>20, u.goroutines, idle)
	}
	if g := s.settle(t, idle+5); g > idle+5 {
		t.Errorf("%d goroutines after the floods, %d before", g, idle)
	}
	s.checkImage(t, client, "p0")
}

// checkTally fails the test for any answer with wrong bytes and any status
// a flood must not get.
func checkTally(t *testing.T, ty *tally) {
	t.Helper()
	for _, w := range ty.wrong {
		t.Error(w)
	}
	for status := range ty.statuses {
		if status != 200 && status != 503 {
			t.Errorf("status %d in a flood: %s", status, ty)
		}
	}
}

// quiet waits until the server runs at most idle goroutines and a few
// more: every request and every build is over.
// recordsOf counts the image records whose packages include pkg.
func (s *loadServer) recordsOf(t *testing.T, pkg string) int {
	t.Helper()
	n := 0
	for _, file := range s.records(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			continue // dropped meanwhile
		}
		var rec struct {
			Packages []string `json:"packages"`
		}
		if json.Unmarshal(b, &rec) == nil && slices.Contains(rec.Packages, pkg) {
			n++
		}
	}
	return n
}

func (s *loadServer) quiet(t *testing.T, idle int) {
	t.Helper()
	if g := s.settle(t, idle+5); g > idle+5 {
		t.Fatalf("the server still runs %d goroutines a minute after a flood, %d when idle", g, idle)
	}
}

// waitLog waits until n of the packages have had their evaluation logged.
func (s *loadServer) waitLog(t *testing.T, n int, pkgs ...string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		seen := 0
		for _, p := range pkgs {
			if s.countLog(0, `msg="nix command"`, "op=evaluate", `\"`+p+`\"`) > 0 {
				seen++
			}
		}
		if seen >= n {
			return
		}
	}
	t.Fatalf("%d of %v were not evaluated within a minute", n, pkgs)
}
