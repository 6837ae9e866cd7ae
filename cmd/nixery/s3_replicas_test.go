package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// startHAProxy round-robins 127.0.0.1:port over the servers, retrying a
// request whose connection fails on another one, and stops at cleanup.
func startHAProxy(t *testing.T, servers []*faultServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  maxconn 1000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5m\n  timeout server 5m\n  retries 3\n  option redispatch\n")
	fmt.Fprintf(&b, "frontend registry\n  bind %s\n  default_backend replicas\nbackend replicas\n  balance roundrobin\n  option httpchk GET /v2/\n", addr)
	for i, s := range servers {
		fmt.Fprintf(&b, "  server r%d %s check inter 300ms fall 1 rise 2\n", i, s.Addr)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", testutil.Tail(out.String(), 30))
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen on %s:\n%s", addr, out.String())
		}
	}
	return addr
}

// TestS3Replicas: three replicas on one SeaweedFS bucket behind HAProxy.
// Docker pulls and runs through the balancer (blobs by redirect); a
// replica killed with SIGKILL during a cold build costs the client a
// retry, and no blob is corrupt; with a volume server stopped, reads
// still succeed.
func TestS3Replicas(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "docker", "haproxy")
	w := testutil.StartSeaweedFS(t)
	ctx := t.Context()
	pop := filepath.Join(t.TempDir(), "popularity.json")
	os.WriteFile(pop, []byte(`{"hello": 1}`), 0o644)
	var rs []*faultServer
	for range 3 {
		rs = append(rs, startS3(t, bin, t.TempDir(), w, "NIX_POPULARITY_URL="+pop))
	}
	lb := startHAProxy(t, rs)
	p := &testutil.Puller{Client: following, Base: "http://" + lb, ManifestTries: 10, BlobTries: 10, Wrong: func(path, got, want string) {
		t.Errorf("GET %s through the balancer: the body hashes to %s, served as %s", path, got, want)
	}}

	// A cold build, and SIGKILL of a replica while it runs: whichever
	// replica had the request, the client's retries get the image.
	done := make(chan error, 1)
	var m *v1.Manifest
	go func() {
		var err error
		for try := 0; try < 10; try++ {
			if m, err = p.Pull(ctx, "hello"); err == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		done <- err
	}()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(rs[0].Log(), `msg="nix command"`) || strings.Contains(rs[1].Log(), `msg="nix command"`) || strings.Contains(rs[2].Log(), `msg="nix command"`) {
			break
		}
	}
	victim := rs[0]
	for _, r := range rs {
		if strings.Contains(r.Log(), `msg="nix command"`) {
			victim = r
			break
		}
	}
	select {
	case err := <-done:
		done <- err
		t.Logf("the pull ended before a replica could be killed during its build")
	default:
		t.Logf("killing replica %s during the cold build", victim.Addr)
	}
	victim.Kill()
	if err := <-done; err != nil {
		t.Fatalf("pull through the balancer after a replica was killed: %v", err)
	}
	if p.WrongBodies() != 0 {
		t.Fatalf("%d corrupt bodies", p.WrongBodies())
	}

	// Docker through the balancer.
	_, port, _ := net.SplitHostPort(lb)
	ref := "localhost:" + port + "/hello"
	dctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	dockerRemove(t, ref)
	t.Cleanup(func() { dockerRemove(t, ref) })
	mustRun(dctx, t, "docker", "pull", ref)
	if out := mustRun(dctx, t, "docker", "run", "--rm", "--network", "none", ref, "hello"); !strings.Contains(out, "Hello, world!") {
		t.Errorf("docker run through the balancer printed %q", out)
	}

	// One volume server down: every blob still reads, and verifies.
	if err := w.KillVolume(2); err != nil {
		t.Fatal(err)
	}
	before := p.Checked()
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if err := p.Blob(ctx, "hello", d.Digest.String()); err != nil {
			t.Errorf("with a volume server down, blob %s: %v", d.Digest, err)
		}
	}
	if p.Checked() == before || p.WrongBodies() != 0 {
		t.Errorf("with a volume server down: %d bodies checked, %d wrong", p.Checked()-before, p.WrongBodies())
	}
}
