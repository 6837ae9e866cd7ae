package testutil

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeMode, set in the environment, makes the test binary act as a
// `nixery serve` for the launcher's tests (see fakeNixery).
const fakeMode = "TESTUTIL_FAKE_NIXERY"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeMode); mode != "" {
		fakeNixery(mode)
		return
	}
	os.Exit(m.Run())
}

// fakeNixery listens where the launcher said, logs its first line with
// what it was given, answers every request 200 and logs it. mode says how
// it starts and stops:
//
//	exit      fail at once, before listening
//	silent    log nothing, never listen
//	nolisten  log a line, never listen
//	clean     exit 0 on SIGTERM
//	unclean   exit 3 on SIGTERM
//	ignore    ignore SIGTERM
func fakeNixery(mode string) {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "fake: failing at start")
		os.Exit(1)
	case "silent":
		time.Sleep(10 * time.Minute)
		os.Exit(1)
	case "nolisten":
		fmt.Println("fake: not listening")
		time.Sleep(10 * time.Minute)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", os.Getenv("NIXERY_LISTEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "fake nixery serving addr=%s port=%s storage=%s timeout=%s backend=%s channel=%q extra=%s args=%q\n",
		ln.Addr(), os.Getenv("PORT"), os.Getenv("STORAGE_PATH"), os.Getenv("NIX_TIMEOUT"),
		os.Getenv("NIXERY_STORAGE_BACKEND"), os.Getenv("NIXERY_CHANNEL"), os.Getenv("TESTUTIL_EXTRA"), os.Args[1:])
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(os.Stderr, "request path=%s\n", r.URL.Path)
	}))
	for range term {
		switch mode {
		case "clean":
			fmt.Fprintln(os.Stderr, "stopped")
			os.Exit(0)
		case "unclean":
			os.Exit(3)
		}
	}
}

func fakeOptions(t *testing.T, mode string, env ...string) NixeryOptions {
	return NixeryOptions{Binary: os.Args[0], Dir: t.TempDir(), Env: append([]string{fakeMode + "=" + mode}, env...)}
}

func TestStartNixery(t *testing.T) {
	t.Setenv("NIXERY_CHANNEL", "must-not-reach-the-server")
	o := fakeOptions(t, "clean", "TESTUTIL_EXTRA=x", "NIX_TIMEOUT=5")
	o.Args = []string{"-max-layers", "7"}
	n, err := StartNixery(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	first := n.FirstLine()
	for _, want := range []string{
		"addr=" + n.Addr, "port=" + strings.TrimPrefix(n.Addr, "127.0.0.1:"), "storage=" + filepath.Join(o.Dir, "storage"),
		"timeout=5 ", "backend=filesystem", `channel=""`, "extra=x", `args=["serve" "-max-layers" "7"]`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first line %q lacks %q", first, want)
		}
	}
	if !strings.HasPrefix(n.Addr, "127.0.0.1:") || n.Ref("shell/curl") != n.Addr+"/shell/curl" || n.URL("/v2/") != "http://"+n.Addr+"/v2/" {
		t.Errorf("Addr %s, Ref %s, URL %s", n.Addr, n.Ref("shell/curl"), n.URL("/v2/"))
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n.Pid())); err != nil || !strings.Contains(string(cmdline), "serve") {
		t.Errorf("Pid %d is not the server: %q, %v", n.Pid(), cmdline, err)
	}

	mark := n.Mark()
	resp, err := n.Client.Get(n.URL("/v2/after-mark"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var since string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if since = n.LogSince(mark); strings.Contains(since, "after-mark") {
			break
		}
	}
	if !strings.Contains(since, "request path=/v2/after-mark") || strings.Contains(since, "fake nixery serving") {
		t.Errorf("logged since the mark: %q", since)
	}
	select {
	case <-n.Done():
		t.Fatal("Done before Stop")
	default:
	}
	if n.ProcessState() != nil || n.PeakRSS() != 0 {
		t.Error("process state while running")
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	<-n.Done()
	if !n.ProcessState().Success() || n.PeakRSS() <= 0 {
		t.Errorf("exit %v, peak RSS %d", n.ProcessState(), n.PeakRSS())
	}
	if !strings.HasSuffix(n.Log(), "stopped\n") {
		t.Errorf("the log lacks what was written at SIGTERM: %q", Tail(n.Log(), 3))
	}
	onDisk, err := os.ReadFile(n.LogPath)
	if err != nil || string(onDisk) != n.Log() {
		t.Errorf("%s holds %q, the log is %q (%v)", n.LogPath, onDisk, n.Log(), err)
	}

	// Started again in the same directory, it keeps the earlier log.
	n2, err := StartNixery(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Kill(); err != nil {
		t.Fatal(err)
	}
	onDisk, _ = os.ReadFile(n2.LogPath)
	if c := strings.Count(string(onDisk), "fake nixery serving"); c != 2 {
		t.Errorf("%s has %d first lines, want 2", n2.LogPath, c)
	}
	if strings.Count(n2.Log(), "fake nixery serving") != 1 {
		t.Errorf("the second server's log holds the first one's: %q", n2.Log())
	}
}

func TestStartNixeryFailures(t *testing.T) {
	if _, err := StartNixery(t.Context(), NixeryOptions{Dir: t.TempDir()}); err == nil {
		t.Error("no binary: accepted")
	}
	for _, c := range []struct {
		mode string
		want []string
	}{
		{"exit", []string{"exited at start", "fake: failing at start"}},
		{"silent", []string{"logged nothing within"}},
		{"nolisten", []string{"did not answer /v2/", "fake: not listening"}},
	} {
		o := fakeOptions(t, c.mode)
		o.StartTimeout = time.Second
		start := time.Now()
		n, err := StartNixery(t.Context(), o)
		if err == nil {
			n.Kill()
			t.Errorf("%s: started", c.mode)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.mode, err, w)
			}
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %v for a start timeout of 1 s", c.mode, d)
		}
	}
}

func TestNixeryStopFailures(t *testing.T) {
	n, err := StartNixery(t.Context(), fakeOptions(t, "unclean"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err == nil || !strings.Contains(err.Error(), "did not shut down cleanly") {
		t.Errorf("exit 3 on SIGTERM: %v", err)
	}

	o := fakeOptions(t, "ignore")
	o.StopTimeout = 300 * time.Millisecond
	if n, err = StartNixery(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err == nil || !strings.Contains(err.Error(), "did not stop within 300ms") {
		t.Errorf("SIGTERM ignored: %v", err)
	}
	<-n.Done()

	// Kill is a crash the test asked for: Stop after it is no failure.
	if n, err = StartNixery(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if st := n.ProcessState().Sys().(syscall.WaitStatus); !st.Signaled() || st.Signal() != syscall.SIGKILL {
		t.Errorf("after Kill: %v", n.ProcessState())
	}
	if err := n.Stop(); err != nil {
		t.Errorf("Stop after Kill: %v", err)
	}

	// A server that exits by itself is a failure at Stop.
	if n, err = StartNixery(t.Context(), fakeOptions(t, "clean")); err != nil {
		t.Fatal(err)
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	<-n.Done()
	if err := n.Stop(); err == nil || !strings.Contains(err.Error(), "exited before it was stopped") {
		t.Errorf("exited by itself: %v", err)
	}
}

func TestServeNixery(t *testing.T) {
	n := ServeNixery(t, fakeOptions(t, "clean"))
	resp, err := n.Client.Get(n.URL("/v2/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The cleanup stops it and fails the test unless that is clean.
}

// TestServeNixeryReal builds the real binary and serves the bundled
// package set (no image is built: Nix is not needed).
func TestServeNixeryReal(t *testing.T) {
	RequireTools(t, "go")
	n := ServeNixery(t, NixeryOptions{})
	if !strings.Contains(n.FirstLine(), "nixery serving") || !strings.Contains(n.FirstLine(), n.Addr) {
		t.Errorf("first line %q", n.FirstLine())
	}
	resp, err := n.Client.Get(n.URL("/v2/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("/v2/: %d %v", resp.StatusCode, resp.Header)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if n.PeakRSS() < 1<<20 {
		t.Errorf("peak RSS %d bytes", n.PeakRSS())
	}
}
