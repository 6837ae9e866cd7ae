package pull

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Request is one request a client sent through the counting proxy.
type Request struct {
	Method string
	Path   string
	Status int
	// Bytes is the number of response body bytes the proxy wrote to the
	// client: what the client actually downloaded.
	Bytes int64
	// Body holds the response body of a successful manifest GET, which
	// the pull needs to tell layers from configs.
	Body []byte
	// ContentDigest and ContentType are the Docker-Content-Digest and
	// Content-Type response headers of a manifest request (HEAD or GET):
	// a client that holds the manifest already may send only a HEAD.
	ContentDigest, ContentType string
	// Start and Duration time the request at the proxy.
	Start    time.Time
	Duration time.Duration
}

// Kind classifies the request by its path: "blob", "manifest" or "other".
func (r *Request) Kind() string {
	switch {
	case strings.Contains(r.Path, "/blobs/"):
		return "blob"
	case strings.Contains(r.Path, "/manifests/"):
		return "manifest"
	}
	return "other"
}

// Digest returns the digest at the end of a blob path, or "".
func (r *Request) Digest() string {
	if i := strings.LastIndex(r.Path, "/blobs/"); i >= 0 {
		return r.Path[i+len("/blobs/"):]
	}
	return ""
}

// proxy is a reverse proxy on 127.0.0.1 that records every request with
// the response bytes written to the client.
type proxy struct {
	ln  net.Listener
	srv *http.Server

	mu  sync.Mutex
	log []Request
	// inflight counts the requests being served, which [proxy.settle]
	// waits for: a handler logs its request after the client may
	// already have read the whole response.
	inflight int
	idle     *sync.Cond
	// manifests holds every manifest body served, by its sha256 digest.
	manifests map[string][]byte
}

// maxManifestBody bounds the manifest bodies the proxy keeps.
const maxManifestBody = 4 << 20

func newProxy(target string) (*proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, manifests: map[string][]byte{}}
	p.idle = sync.NewCond(&p.mu)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		isManifest := strings.Contains(r.URL.Path, "/manifests/")
		cw.keep = r.Method == http.MethodGet && isManifest
		p.mu.Lock()
		p.inflight++
		p.mu.Unlock()
		start := time.Now()
		rp.ServeHTTP(cw, r)
		req := Request{Method: r.Method, Path: r.URL.Path, Status: cw.status, Bytes: cw.n, Start: start, Duration: time.Since(start)}
		if isManifest {
			req.ContentDigest = w.Header().Get("Docker-Content-Digest")
			req.ContentType = w.Header().Get("Content-Type")
		}
		p.mu.Lock()
		if cw.keep && cw.status == http.StatusOK && !cw.truncated {
			req.Body = cw.body.Bytes()
			p.manifests[fmt.Sprintf("sha256:%x", sha256.Sum256(req.Body))] = req.Body
		}
		p.log = append(p.log, req)
		p.inflight--
		if p.inflight == 0 {
			p.idle.Broadcast()
		}
		p.mu.Unlock()
	})}
	go p.srv.Serve(ln)
	return p, nil
}

// addr returns host:port of the proxy.
func (p *proxy) addr() string { return p.ln.Addr().String() }

// mark returns the current length of the request log.
func (p *proxy) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.log)
}

// settle waits until no request is being served, at most for d: a
// client's last request is logged once its handler returns, which may be
// after the client finished.
func (p *proxy) settle(d time.Duration) {
	timer := time.AfterFunc(d, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inflight > 0 && time.Now().Before(deadline) {
		p.idle.Wait()
	}
}

// manifest returns a manifest body served through the proxy, by digest.
func (p *proxy) manifest(digest string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.manifests[digest]
}

// since returns the requests recorded after mark.
func (p *proxy) since(mark int) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log[mark:]...)
}

func (p *proxy) close() error { return p.srv.Close() }

// countingWriter counts the body bytes written to the client.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
	keep   bool
	body   bytes.Buffer
	// truncated is set when the body was longer than maxManifestBody.
	truncated bool
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	if w.keep {
		if w.body.Len()+n <= maxManifestBody {
			w.body.Write(b[:n])
		} else {
			w.truncated = true
		}
	}
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
