package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Module is the module path of nixery, which [ModuleDir] looks for.
const Module = "github.com/nixery-go/nixery"

// ModuleDir returns the root of the nixery module: the nearest directory
// at or above the working directory whose go.mod declares [Module].
func ModuleDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module "+Module+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testutil: no go.mod of %s at or above the working directory", Module)
		}
		dir = parent
	}
}

// BuildNixery builds ./cmd/nixery of the module at moduleDir ("" finds it
// with [ModuleDir]) into dir and returns the binary's path. Build it once
// and start it as often as needed.
//
// The binary is built without the race detector, even for a test run with
// -race: the detector makes building layers (compression) some twenty
// times slower, and the same code runs under -race in the in-process tests
// of packages registry and layers and of cmd/nixery's serve.
func BuildNixery(ctx context.Context, moduleDir, dir string) (string, error) {
	if moduleDir == "" {
		var err error
		if moduleDir, err = ModuleDir(); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(dir, "nixery")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/nixery")
	cmd.Dir = moduleDir
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testutil: go build ./cmd/nixery in %s: %w\n%s", moduleDir, err, out)
	}
	return bin, nil
}

// NixeryBinary builds the nixery binary for t into a temporary directory
// of t (see [BuildNixery]) and fails the test if that fails.
func NixeryBinary(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin, err := BuildNixery(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// NixeryOptions configure [StartNixery] and [ServeNixery].
type NixeryOptions struct {
	// Binary is the nixery binary ([BuildNixery]). Required by
	// StartNixery; ServeNixery builds one when it is empty.
	Binary string
	// Dir holds the server's storage (Dir/storage) and its log
	// (Dir/server.log, appended to, so that a server started again in
	// the same Dir keeps the earlier log). Required by StartNixery;
	// ServeNixery uses a temporary directory when it is empty.
	Dir string
	// Env is added to the server's environment after the defaults (see
	// [StartNixery]); an entry here wins over a default of the same name.
	Env []string
	// Args are passed after `nixery serve`.
	Args []string
	// StartTimeout bounds the wait for the server to answer; 2 minutes
	// when zero. StopTimeout is how long [Nixery.Stop] waits after
	// SIGTERM before it sends SIGKILL; 30 seconds when zero.
	StartTimeout, StopTimeout time.Duration
}

// A Nixery is a `nixery serve` process started by [StartNixery].
type Nixery struct {
	// Addr is the address it listens on, 127.0.0.1:port.
	Addr string
	// LogPath is the file its standard output and error go to.
	LogPath string
	// Client sends requests to it. It does not follow redirects: a
	// redirect is an answer to check.
	Client *http.Client

	cmd         *exec.Cmd
	log         *logSink
	firstLine   string
	stopTimeout time.Duration

	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // cmd.Wait's result, set before exited closes

	mu      sync.Mutex
	stopped bool  // Stop or Kill has run
	stopErr error // what the first Stop or Kill returned
}

// StartNixery starts `nixery serve` with o.Binary on a free port of
// 127.0.0.1 and waits until it has written its first log line and answers
// GET /v2/ with 200. Its environment is this process's without NIXERY_*,
// PORT, STORAGE_PATH, NIX_TIMEOUT and NIX_POPULARITY_URL, plus
//
//	PORT=<port> NIXERY_LISTEN=127.0.0.1:<port>
//	NIXERY_STORAGE_BACKEND=filesystem STORAGE_PATH=<Dir>/storage
//	NIX_TIMEOUT=600
//
// and then o.Env. Everything the server writes to its standard output and
// error is kept (see [Nixery.Log]) and copied to Dir/server.log. The server
// runs until [Nixery.Stop] or [Nixery.Kill], not until ctx ends: ctx bounds
// only the wait for it to start. On Linux it gets SIGTERM if this process
// dies first.
//
// An error (the server exited, or did not answer in time) holds the last
// lines of its log; the server is stopped then.
func StartNixery(ctx context.Context, o NixeryOptions) (*Nixery, error) {
	if o.Binary == "" || o.Dir == "" {
		return nil, errors.New("testutil: NixeryOptions need Binary and Dir")
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(o.Dir, "server.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	n := &Nixery{
		Addr:    "127.0.0.1:" + strconv.Itoa(port),
		LogPath: logPath,
		Client: &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:         &logSink{file: f},
		stopTimeout: o.StopTimeout,
		exited:      make(chan struct{}),
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool {
		k, _, _ := strings.Cut(e, "=")
		return strings.HasPrefix(k, "NIXERY_") || slices.Contains([]string{"PORT", "STORAGE_PATH", "NIX_TIMEOUT", "NIX_POPULARITY_URL"}, k)
	})
	env = append(env,
		"PORT="+strconv.Itoa(port),
		"NIXERY_LISTEN="+n.Addr,
		"NIXERY_STORAGE_BACKEND=filesystem",
		"STORAGE_PATH="+filepath.Join(o.Dir, "storage"),
		"NIX_TIMEOUT=600",
	)
	n.cmd = exec.Command(o.Binary, append([]string{"serve"}, o.Args...)...)
	n.cmd.Env = append(env, o.Env...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.WaitDelay = 5 * time.Second // a child left holding the output
	n.cmd.SysProcAttr = sysProcAttr()
	if err := n.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("testutil: starting nixery serve: %w", err)
	}
	go func() {
		n.waitErr = n.cmd.Wait()
		f.Close()
		close(n.exited)
	}()
	if err := n.waitReady(ctx, o.StartTimeout); err != nil {
		n.Kill()
		return nil, fmt.Errorf("%w (log %s):\n%s", err, logPath, Tail(n.Log(), 40))
	}
	return n, nil
}

// waitReady waits for the first log line, then for GET /v2/ to answer 200.
func (n *Nixery) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-n.exited:
			return fmt.Errorf("testutil: nixery serve exited at start: %v", n.waitErr)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("testutil: waiting for nixery serve to start: %w", ctx.Err())
			}
			if n.firstLine == "" {
				return fmt.Errorf("testutil: nixery serve logged nothing within %v", timeout)
			}
			return fmt.Errorf("testutil: nixery serve did not answer /v2/ on %s within %v (last: %v)", n.Addr, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
		if n.firstLine == "" {
			line, _, complete := strings.Cut(n.Log(), "\n")
			if !complete {
				continue
			}
			n.firstLine = line
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL("/v2/"), nil)
		resp, err := n.Client.Do(req)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Errorf("status %d", resp.StatusCode)
	}
}

// URL returns the server's URL for path, which starts with a slash.
func (n *Nixery) URL(path string) string { return "http://" + n.Addr + path }

// Ref returns the image reference clients use for repository name.
func (n *Nixery) Ref(name string) string { return n.Addr + "/" + name }

// Pid is the server's process ID, for reading /proc/<pid>/status or
// sending it a signal (SIGQUIT makes the Go runtime print every
// goroutine's stack to the log and exit).
func (n *Nixery) Pid() int { return n.cmd.Process.Pid }

// FirstLine is the first line the server logged.
func (n *Nixery) FirstLine() string { return n.firstLine }

// Log returns everything the server has written to its standard output and
// error so far.
func (n *Nixery) Log() string { return n.log.String() }

// Mark returns the length of the log now, for [Nixery.LogSince].
func (n *Nixery) Mark() int { return n.log.Len() }

// LogSince returns what the server logged after mark.
func (n *Nixery) LogSince(mark int) string { return n.Log()[mark:] }

// WaitLog waits up to within for what the server logs after mark to match
// re, and reports whether it did. Request lines are logged a moment after
// the response ends.
func (n *Nixery) WaitLog(mark int, re *regexp.Regexp, within time.Duration) bool {
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		if re.MatchString(n.LogSince(mark)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Done is closed when the server process has exited, for whatever reason.
func (n *Nixery) Done() <-chan struct{} { return n.exited }

// Stop sends the server SIGTERM and waits for it to exit, sending SIGKILL
// when it has not exited after the stop timeout. It returns an error when
// the server had exited before (unless [Nixery.Kill] ended it), did not
// exit with status 0, or had to be killed. Calling it again returns the same
// result.
func (n *Nixery) Stop() error {
	return n.end("stopped", func() error {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
			if n.waitErr != nil {
				return fmt.Errorf("testutil: nixery serve did not shut down cleanly on SIGTERM: %v (log %s)", n.waitErr, n.LogPath)
			}
			return nil
		case <-time.After(n.stopTimeout):
			n.cmd.Process.Kill()
			<-n.exited
			return fmt.Errorf("testutil: nixery serve did not stop within %v of SIGTERM; killed it (log %s)", n.stopTimeout, n.LogPath)
		}
	})
}

// Kill ends the server with SIGKILL at once, as a crash would, and waits
// for it to exit; a later [Nixery.Stop] returns nil. The Nix processes it
// started run in process groups of their own and are not killed with it.
// Kill returns an error only when the server had already exited by itself.
func (n *Nixery) Kill() error {
	return n.end("killed", func() error {
		n.cmd.Process.Kill()
		<-n.exited
		return nil
	})
}

// end runs stop unless Stop or Kill ran before or the server has exited by
// itself, and remembers the result.
func (n *Nixery) end(what string, stop func() error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return n.stopErr
	}
	n.stopped = true
	select {
	case <-n.exited:
		n.stopErr = fmt.Errorf("testutil: nixery serve exited before it was %s: %v (log %s)", what, n.waitErr, n.LogPath)
	default:
		n.stopErr = stop()
	}
	return n.stopErr
}

// ProcessState is the state of the exited server, its resource use
// included (for example with speed.UsageOf); nil while it runs.
func (n *Nixery) ProcessState() *os.ProcessState {
	select {
	case <-n.exited:
		return n.cmd.ProcessState
	default:
		return nil
	}
}

// PeakRSS is the exited server's peak resident set size in bytes
// (ru_maxrss); 0 while it runs.
func (n *Nixery) PeakRSS() int64 {
	if ps := n.ProcessState(); ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru != nil {
			return ru.Maxrss * 1024 // Linux reports KiB
		}
	}
	return 0
}

// ServeNixery starts a server for a test with [StartNixery], failing the
// test if it does not start, and stops it at cleanup, where it fails the
// test if the server had exited by itself, did not shut down cleanly on
// SIGTERM or had to be killed. When the test has failed, the last lines of
// the server's log are logged.
func ServeNixery(t testing.TB, o NixeryOptions) *Nixery {
	t.Helper()
	if o.Binary == "" {
		o.Binary = NixeryBinary(t)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	n, err := StartNixery(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("server log (last lines):\n%s", Tail(n.Log(), 60))
		}
	})
	t.Logf("nixery serve on %s; first log line: %s", n.Addr, n.FirstLine())
	return n
}

// logSink keeps a process's output in memory and copies it to a file. A
// failed write to the file is ignored: the copy in memory is the one tests
// read, and an error here would stop the process's output.
type logSink struct {
	SyncBuffer
	file *os.File
}

func (l *logSink) Write(p []byte) (int, error) {
	l.SyncBuffer.Write(p)
	l.file.Write(p)
	return len(p), nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
