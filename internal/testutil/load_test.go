package testutil

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPackageSet writes a set, commits it and builds its packages with
// the real Nix from the git repository at that commit.
func TestPackageSet(t *testing.T) {
	RequireTools(t, "nix-build", "git")
	dir := t.TempDir()
	set := PackageSet{Small: SmallNames("p", 3), Big: map[string]int64{"big": 5000}, Slow: map[string]time.Duration{"slow": 10 * time.Millisecond}, Nonce: t.Name()}
	if err := set.Write(dir); err != nil {
		t.Fatal(err)
	}
	commit, err := GitCommit(t.Context(), dir)
	if err != nil || len(commit) != 40 {
		t.Fatalf("commit %q: %v", commit, err)
	}
	expr := `{ a }: (import (builtins.fetchGit { url = "` + dir + `"; rev = "` + commit + `"; }) { }).${a}`
	for attr, check := range map[string]func(out string) bool{
		"p2": func(out string) bool {
			b, err := os.ReadFile(filepath.Join(out, "p2"))
			return err == nil && string(b) == "p2\n"
		},
		"iana-etc": func(out string) bool { _, err := os.Stat(filepath.Join(out, "iana-etc")); return err == nil },
		"big": func(out string) bool {
			fi, err := os.Stat(filepath.Join(out, "blob"))
			return err == nil && fi.Size() == 5000
		},
		"slow": func(out string) bool { fi, err := os.Stat(out); return err == nil && fi.IsDir() },
	} {
		out, err := exec.Command("nix-build", "--no-out-link", "-E", expr, "--argstr", "a", attr).Output()
		if err != nil {
			t.Fatalf("nix-build %s: %v", attr, err)
		}
		if p := strings.TrimSpace(string(out)); !check(p) {
			t.Errorf("%s: %s is not what the set says", attr, p)
		}
	}
	if err := (PackageSet{Small: []string{"cacert"}}).Write(dir); err == nil {
		t.Error("a set naming cacert twice was written")
	}
	if err := (PackageSet{Small: []string{"a b"}}).Write(dir); err == nil {
		t.Error("a set with a bad name was written")
	}
}

// TestClientFrom: the server sees the client's chosen loopback address.
func TestClientFrom(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.Write([]byte(host))
	}))
	defer srv.Close()
	for _, i := range []int{0, 7, 300} {
		ip := LoopbackIP(i)
		r := Do(t, ClientFrom(ip), "GET", srv.URL, nil)
		if string(r.Body) != ip {
			t.Errorf("client %s seen as %s", ip, r.Body)
		}
	}
	if LoopbackIP(300) != "127.0.2.44" {
		t.Errorf("LoopbackIP(300) = %s", LoopbackIP(300))
	}
}
