package registry

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// busyError is an error with a retry delay, as package nix's BusyError.
type busyError struct{ after time.Duration }

func (e busyError) Error() string             { return "fake: too many builds" }
func (e busyError) RetryAfter() time.Duration { return e.after }

var _ RetryAfter = busyError{}

// TestRetryAfter: 503s carry Retry-After, the delay of an error that has
// one (rounded up to whole seconds) or DefaultRetryAfter.
func TestRetryAfter(t *testing.T) {
	f, srv, logs := newTestServer(t)
	f.errs["busy"] = fmt.Errorf("images: %w", busyError{1500 * time.Millisecond})
	f.errs["slow"] = fmt.Errorf("nix: build timed out: %w", context.DeadlineExceeded)
	f.errs["broken"] = fmt.Errorf("nix: build failed")
	for name, want := range map[string]string{"busy": "2", "slow": fmt.Sprint(int(DefaultRetryAfter / time.Second)), "broken": ""} {
		r := do(t, srv, "GET", "/v2/"+name+"/manifests/latest", nil)
		code, _ := r.RegistryError(t)
		if got := r.Header.Get("Retry-After"); got != want || (want != "" && (r.Status != 503 || code != "UNAVAILABLE")) {
			t.Errorf("%s: %d %s, Retry-After %q, want %q", name, r.Status, code, got, want)
		}
	}
	// A full queue is in the request line only: a flood of them must
	// not flood the log.
	if s := logs.String(); strings.Contains(s, "path=/v2/busy/manifests/latest code=") || !strings.Contains(s, `msg="request failed" path=/v2/slow/manifests/latest code=UNAVAILABLE`) {
		t.Errorf("log:\n%s", s)
	}
}

// cachingImages answers CachedManifests for the names in cached, and
// blocks Manifests of names in slow until release is closed.
type cachingImages struct {
	*fakeImages
	cached  map[string]bool
	slow    map[string]bool
	release chan struct{}
	entered chan string
}

func (c *cachingImages) CachedManifests(name, tag string) ([]v1.Descriptor, bool) {
	if !c.cached[name] || tag != "latest" {
		return nil, false
	}
	return c.images[name], true
}

func (c *cachingImages) Manifests(ctx context.Context, name, tag string) ([]v1.Descriptor, error) {
	if c.slow[name] {
		c.entered <- name
		select {
		case <-c.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.fakeImages.Manifests(ctx, name, tag)
}

var _ CachedImages = (*cachingImages)(nil)

func serveFrom(reg http.Handler, method, path, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://registry.test"+path, nil)
	req.RemoteAddr = remote
	w := httptest.NewRecorder()
	reg.ServeHTTP(w, req)
	return w
}

// TestClientLimit: a client may wait for at most WithMaxClientBuilds
// images not built yet; a request for another one is a 429 with
// Retry-After, while more requests for the same images, other clients and
// cached images are served.
func TestClientLimit(t *testing.T) {
	f := newFakeImages()
	c := &cachingImages{fakeImages: f, cached: map[string]bool{"hello": true}, slow: map[string]bool{},
		release: make(chan struct{}), entered: make(chan string, 32)}
	for _, n := range []string{"cold1", "cold2", "cold3"} {
		f.images[n], c.slow[n] = f.images["hello"], true
	}
	reg := New(c, WithLogger(slog.New(slog.DiscardHandler)), WithMaxClientBuilds(2))
	defer reg.Close()

	var wg sync.WaitGroup
	codes := make(chan int, 16)
	cold := func(name, remote string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- serveFrom(reg, "GET", "/v2/"+name+"/manifests/latest", remote).Code
		}()
		<-c.entered
	}
	cold("cold1", "192.0.2.1:1000")
	cold("cold2", "192.0.2.1:1001")
	// More requests for images the client waits for already count once:
	// they share their builds.
	for range 8 {
		cold("cold1", "192.0.2.1:1002")
	}
	w := serveFrom(reg, "GET", "/v2/cold3/manifests/latest", "192.0.2.1:1003")
	if w.Code != 429 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"code":"TOOMANYREQUESTS"`) {
		t.Errorf("a third image: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// A cached image is served to the same client, however many at once.
	var cached sync.WaitGroup
	for range 64 {
		cached.Add(1)
		go func() {
			defer cached.Done()
			if w := serveFrom(reg, "GET", "/v2/hello/manifests/latest", "192.0.2.1:1004"); w.Code != 200 {
				t.Errorf("a cached image: %d %s", w.Code, w.Body)
			}
		}()
	}
	cached.Wait()
	// Another client is not limited by the first.
	cold("cold3", "192.0.2.2:1000")
	close(c.release)
	wg.Wait()
	close(codes)
	n := 0
	for code := range codes {
		n++
		if code != 200 {
			t.Errorf("a cold request within the limit: %d", code)
		}
	}
	if n != 11 {
		t.Errorf("%d answers, want 11", n)
	}
	// Once they are done the client may ask for another.
	if w := serveFrom(reg, "GET", "/v2/cold3/manifests/latest", "192.0.2.1:1005"); w.Code != 200 {
		t.Errorf("after the cold requests ended: %d", w.Code)
	}
	reg.clients.mu.Lock()
	left := len(reg.clients.n)
	reg.clients.mu.Unlock()
	if left != 0 {
		t.Errorf("%d clients still counted", left)
	}
}

func TestClientOf(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:1234":             "192.0.2.1",
		"[::ffff:192.0.2.1]:1234":    "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:443":      "2001:db8:1:3::/64",
		"not an address":             "not an address",
		"[fe80::1%eth0]:80":          "fe80::/64",
	} {
		if got := clientOf(addr); got != want {
			t.Errorf("clientOf(%q) = %q, want %q", addr, got, want)
		}
	}
}

// fileImages serves one blob from a file, so that it is sent with
// sendfile as the filesystem store's blobs are.
type fileImages struct {
	*fakeImages
	path string
	h    v1.Hash
	size int64
}

func (f *fileImages) Blob(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error) {
	if h != f.h {
		return f.fakeImages.Blob(ctx, h)
	}
	file, err := os.Open(f.path)
	return file, f.size, err
}

// smallBuffers is a listener whose connections have a small send buffer,
// so that a client that does not read stalls the server's writes at once.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

// TestWriteDeadlines: a client that stops reading a blob loses its
// connection after the write timeout, while one that reads slowly, more
// slowly than a chunk per timeout, gets every byte.
func TestWriteDeadlines(t *testing.T) {
	const size = 3 << 20
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(strings.NewReader(string(data)))
	logs := &testutil.SyncBuffer{}
	const timeout = 300 * time.Millisecond
	reg := New(&fileImages{newFakeImages(), path, h, size}, WithLogger(slog.New(slog.NewTextHandler(logs, nil))), WithWriteTimeout(timeout))
	defer reg.Close()
	srv := httptest.NewUnstartedServer(reg)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()

	dial := func() net.Conn {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		fmt.Fprintf(c, "GET /v2/any/blobs/%s HTTP/1.1\r\nHost: registry.test\r\n\r\n", h)
		return c
	}

	// The stalled reader reads nothing for 4 timeouts, then finds the
	// connection closed after what the buffers held.
	stalled := dial()
	defer stalled.Close()
	// The slow reader reads 16 KB every 10 ms: 3 MB take 2 s, a 1 MB
	// chunk twice the timeout.
	slow := dial()
	defer slow.Close()
	got := make(chan []byte, 1)
	go func() {
		r := bufio.NewReader(&testutil.PacedReader{R: slow, N: 16 << 10, Pause: 10 * time.Millisecond})
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Errorf("the slow reader: %v after %d bytes", err, len(b))
		}
		got <- b
	}()
	time.Sleep(4 * timeout)
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, stalled)
	if n >= size || err != nil && !isReset(err) {
		t.Errorf("the stalled reader got %d bytes of %d (%v); its connection was not cut", n, size, err)
	}
	if b := <-got; string(b) != string(data) {
		t.Errorf("the slow reader got %d bytes, not the blob", len(b))
	}
	// Both are in the log, the stalled one short of the blob.
	var s string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s = logs.String(); strings.Count(s, "msg=request ") == 2 {
			break
		}
	}
	if !strings.Contains(s, fmt.Sprintf("status=200 bytes=%d ", size)) || strings.Count(s, "status=200") != 2 {
		t.Errorf("log:\n%s", s)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}
