package nixery

import (
	"bytes"
	"fmt"
	"html"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/nix"
	"github.com/nixery-go/nixery/web"
)

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"seconds": func(s float64) string { return fmt.Sprintf("%.1f", s) },
	"clock":   func(t time.Time) string { return t.UTC().Format(clockFormat) },
	"bytes":   formatBytes,
	"short": func(digest string) string {
		if len(digest) > 19 {
			return digest[:19]
		}
		return digest
	},
}).ParseFS(web.Templates, "templates/*.html"))

// formatBytes writes n in B, kB, MB or GB (powers of 1000).
func formatBytes(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

// eventView is an event as the page and the JSON endpoints show it: with
// its status line.
type eventView struct {
	images.Event
	Status string `json:"status"`
}

func eventJSON(e images.Event) eventView { return eventView{e, e.Status()} }

func eventsJSON(es []images.Event) []eventView {
	out := make([]eventView, len(es))
	for i, e := range es {
		out[i] = eventJSON(e)
	}
	return out
}

// pageData is what the landing page shows.
type pageData struct {
	Title, Source, Host string
	ShellPackages       []string
	AlwaysIncluded      []string
	Active              []eventView
	Recent, Errors      []eventView
	RecentRows          template.HTML // Recent as table rows
	ErrorRows           template.HTML // Errors as table rows
	Query               string
	Packages            []nix.PackageInfo
	PackagesTotal       int
	PackagesErr         string
	Image               *images.ImageInfo
}

var pageBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *Server) render(w http.ResponseWriter, name string, status int, d *pageData) {
	d.Source = s.source.String()
	buf := pageBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer pageBufs.Put(buf)
	if err := pageTemplates.ExecuteTemplate(buf, name, d); err != nil {
		s.log.Error("rendering the page", "page", name, "error", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// recentRows renders the rows of the recent builds' table. The history
// holds up to 1,000 builds and 1,000 errors; written by hand with
// html.EscapeString, their rows cost a microsecond each, where
// html/template's reflective escapers cost tens.
func recentRows(es []eventView) template.HTML {
	var sb strings.Builder
	sb.Grow(len(es) * 220)
	for _, e := range es {
		fmt.Fprintf(&sb, `<tr data-build="%d"><td><a href="/image/%s"><code>%s</code></a></td><td>%s</td><td>%.1f</td><td>%d</td><td>%s</td><td>%d</td></tr>`+"\n",
			e.Build, html.EscapeString(e.Key), html.EscapeString(e.Name), e.Time.UTC().Format(clockFormat),
			e.Seconds, e.Layers, formatBytes(e.Bytes), e.CacheHits)
	}
	return template.HTML(sb.String())
}

// errorRows renders the rows of the recent errors' table.
func errorRows(es []eventView) template.HTML {
	var sb strings.Builder
	sb.Grow(len(es) * 200)
	for _, e := range es {
		fmt.Fprintf(&sb, `<tr data-build="%d"><td><code>%s</code></td><td>%s</td><td>%s</td><td class="error">%s</td></tr>`+"\n",
			e.Build, html.EscapeString(e.Name), e.Time.UTC().Format(clockFormat), html.EscapeString(e.Cause), html.EscapeString(e.Error))
	}
	return template.HTML(sb.String())
}

const clockFormat = "2006-01-02 15:04:05Z"

// hostOf is the host clients pull from: the request's Host header.
func hostOf(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return "localhost"
}

// servePage renders the landing page. The package list comes from the
// Nix builder's listing, started in the background on the first visit;
// until it is ready the page says so.
func (s *Server) servePage(w http.ResponseWriter, req *http.Request) {
	done, failed := s.images.Recent()
	d := &pageData{
		Title: "nixery", Host: hostOf(req),
		ShellPackages: images.ShellPackages, AlwaysIncluded: images.AlwaysIncluded,
		Active: eventsJSON(s.images.Active()), Recent: eventsJSON(done), Errors: eventsJSON(failed),
		Query: strings.TrimSpace(req.URL.Query().Get("q")),
	}
	d.RecentRows, d.ErrorRows = recentRows(d.Recent), errorRows(d.Errors)
	pkgs, err := s.packages()
	switch {
	case err != nil:
		d.PackagesErr = err.Error()
	default:
		d.PackagesTotal = len(pkgs)
		if d.Query == "" {
			d.Packages = pkgs
		} else {
			q := strings.ToLower(d.Query)
			for _, p := range pkgs {
				if strings.Contains(strings.ToLower(p.Attr), q) || strings.Contains(strings.ToLower(p.Version), q) {
					d.Packages = append(d.Packages, p)
				}
			}
		}
	}
	s.render(w, "index.html", http.StatusOK, d)
}

// packages returns the package listing if it is ready, and otherwise
// starts it and says it is not.
func (s *Server) packages() ([]nix.PackageInfo, error) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if s.listed != nil {
		return s.listed, nil
	}
	if s.listErr != nil && time.Since(s.listAt) < time.Minute {
		return nil, s.listErr
	}
	if !s.listing {
		s.listing = true
		go func() {
			pkgs, err := s.nix.Packages(s.life)
			s.listMu.Lock()
			defer s.listMu.Unlock()
			s.listing = false
			if err != nil {
				s.listErr, s.listAt = fmt.Errorf("the package list is not available: %w", err), time.Now()
				return
			}
			s.listed = pkgs
		}()
	}
	return nil, fmt.Errorf("the package list is being read from the %s; reload in a moment", s.source)
}

// serveImagePage renders an image's page.
func (s *Server) serveImagePage(w http.ResponseWriter, req *http.Request) {
	info, ok := s.images.ImageInfo(req.PathValue("key"))
	if !ok {
		http.Error(w, "no image with this key: it was never built here, or has been collected", http.StatusNotFound)
		return
	}
	s.render(w, "image.html", http.StatusOK, &pageData{Title: "nixery: " + info.Name, Host: hostOf(req), Image: &info})
}

func staticHandler() http.Handler {
	sub, err := fs.Sub(web.Static, "static")
	if err != nil {
		panic(err)
	}
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}
