package nixery

import (
	"encoding/json"
	"net/http"
	"os"
)

// readiness is what /readyz asks of the Nix builder ([*nix.Builder] has
// it): whether the package set's popularity is known, and whether Nix is
// installed.
type readiness interface {
	PopularityReady() bool
	CheckNix() error
}

// Readiness is the answer of /readyz: each check is "ok" or says what is
// wrong.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// Ready runs the readiness checks of /readyz: the package set's
// popularity is ready (builds wait for it until then), the storage
// directory is writable, and Nix is installed.
func (s *Server) Ready() Readiness {
	return ready(s.nix, s.storage)
}

func ready(n readiness, storage string) Readiness {
	r := Readiness{Ready: true, Checks: map[string]string{}}
	fail := func(check, why string) {
		r.Ready = false
		r.Checks[check] = why
	}
	r.Checks["popularity"] = "ok"
	if !n.PopularityReady() {
		fail("popularity", "not ready yet: the package set's popularity is being computed or read")
	}
	r.Checks["storage"] = "ok"
	if f, err := os.CreateTemp(storage, ".readyz-*"); err != nil {
		fail("storage", "not writable: "+err.Error())
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	r.Checks["nix"] = "ok"
	if err := n.CheckNix(); err != nil {
		fail("nix", err.Error())
	}
	return r
}

// serveHealth answers /healthz: the process is alive.
func serveHealth(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("ok\n"))
}

// serveReady answers /readyz: 200 when every check passes, else 503, with
// the checks as JSON.
func (s *Server) serveReady(w http.ResponseWriter, req *http.Request) {
	r := s.Ready()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(r)
}
