package pull

import (
	"bytes"
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
	p := &proxy{ln: ln}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		cw.keep = r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
		start := time.Now()
		rp.ServeHTTP(cw, r)
		req := Request{Method: r.Method, Path: r.URL.Path, Status: cw.status, Bytes: cw.n, Start: start, Duration: time.Since(start)}
		if cw.keep && cw.status == http.StatusOK {
			req.Body = cw.body.Bytes()
		}
		p.mu.Lock()
		p.log = append(p.log, req)
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
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	if w.keep && w.body.Len()+n <= maxManifestBody {
		w.body.Write(b[:n])
	}
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
