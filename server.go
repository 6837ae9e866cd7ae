package nixery

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ServeHTTP implements http.Handler: the registry API under /v2/, and
// beside it the landing page, the build events, the metrics and the health
// checks (see README.md for every endpoint):
//
//	GET /                  the landing page (HTML)
//	GET /image/{key}       an image's page: its layers, their store paths and who shares them
//	GET /events            build progress as Server-Sent Events (JSON data)
//	GET /api/builds        builds in progress, recent builds and recent errors (JSON)
//	GET /api/packages      the package set's attributes and versions (JSON)
//	GET /api/images/{key}  an image's layers (JSON)
//	GET /metrics           Prometheus metrics
//	GET /healthz           200 while the process is alive
//	GET /readyz            200 when ready to build, else 503 (JSON)
//
// Every other path is the registry's (a 404 in the registry's JSON outside
// /v2/).
func (s *Server) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if strings.HasPrefix(req.URL.Path, "/v2") {
		s.Registry.ServeHTTP(w, req)
		return
	}
	s.mux.ServeHTTP(w, req)
}

// routes returns the mux of everything but the registry API.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/", s.Registry) // the registry's 404 for unknown paths
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /image/{key}", s.serveImagePage)
	mux.Handle("GET /static/", staticHandler())
	mux.HandleFunc("GET /events", s.serveEvents)
	mux.HandleFunc("GET /api/builds", s.serveBuilds)
	mux.HandleFunc("GET /api/packages", s.servePackages)
	mux.HandleFunc("GET /api/images/{key}", s.serveImageJSON)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /healthz", serveHealth)
	mux.HandleFunc("GET /readyz", s.serveReady)
	return mux
}

// Metrics returns the handler of /metrics, for an embedder that mounts
// the registry alone.
func (s *Server) Metrics() http.Handler { return s.metrics.handler() }

// sseHeartbeat is how often an idle event stream gets a comment, so that
// proxies keep it open.
const sseHeartbeat = 15 * time.Second

// serveEvents streams build progress as Server-Sent Events: first the
// builds in progress, then every event (see images.Event), each as
//
//	event: build
//	id: <build number>
//	data: <the event as JSON>
//
// Builds in progress re-send their progress every 100 ms. The stream ends
// when the client leaves or the server closes.
func (s *Server) serveEvents(w http.ResponseWriter, req *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	c, cancel := s.images.Subscribe(256)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(v any, id uint64) bool {
		data, err := json.Marshal(v)
		if err != nil {
			return false
		}
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprintf(w, "event: build\nid: %d\ndata: %s\n\n", id, data); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	fmt.Fprint(w, ": nixery build events\n\n")
	flusher.Flush()
	for _, e := range s.images.Active() {
		if !send(eventJSON(e), e.Build) {
			return
		}
	}
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		select {
		case e, ok := <-c:
			if !ok || !send(eventJSON(e), e.Build) {
				return
			}
		case <-beat.C:
			rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case <-req.Context().Done():
			return
		case <-s.life.Done():
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// serveBuilds answers /api/builds.
func (s *Server) serveBuilds(w http.ResponseWriter, req *http.Request) {
	done, failed := s.images.Recent()
	writeJSON(w, http.StatusOK, map[string]any{
		"active": eventsJSON(s.images.Active()),
		"recent": eventsJSON(done),
		"errors": eventsJSON(failed),
	})
}

// servePackages answers /api/packages.
func (s *Server) servePackages(w http.ResponseWriter, req *http.Request) {
	pkgs, err := s.nix.Packages(req.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"source": s.source.String(), "packages": pkgs})
}

// serveImageJSON answers /api/images/{key}.
func (s *Server) serveImageJSON(w http.ResponseWriter, req *http.Request) {
	info, ok := s.images.ImageInfo(req.PathValue("key"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no image with this key"})
		return
	}
	writeJSON(w, http.StatusOK, info)
}
