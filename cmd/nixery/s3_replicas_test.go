package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/s3store"
)

// startHAProxy round-robins 127.0.0.1:port over the servers' addresses,
// retrying on another one a request whose connection fails or that gets
// no response at all, and stops at cleanup.
func startHAProxy(t *testing.T, servers []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  maxconn 1000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5m\n  timeout server 5m\n  retries 3\n  retry-on conn-failure empty-response\n  option redispatch\n")
	fmt.Fprintf(&b, "frontend registry\n  bind %s\n  default_backend replicas\nbackend replicas\n  balance roundrobin\n  option httpchk GET /v2/\n", addr)
	for i, s := range servers {
		fmt.Fprintf(&b, "  server r%d %s check inter 300ms fall 1 rise 2\n", i, s)
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
	lb := startHAProxy(t, replicaAddrs(rs))
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
	ref := dockerRef(t, lb, "hello")
	dctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
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

// replicaAddrs returns the servers' addresses, for [startHAProxy].
func replicaAddrs(rs []*faultServer) []string {
	var addrs []string
	for _, r := range rs {
		addrs = append(addrs, r.Addr)
	}
	return addrs
}

// replicaSetEnv writes the package set of the replica tests and
// benchmarks, the bundled set's packages and "big", a package of size
// random bytes (its layer is about as big), and a popularity file for
// every replica; it returns the environment that serves them
// (NIXERY_PKGS_PATH, NIX_POPULARITY_URL). hello/big is an image that runs.
// A nonce makes big a new derivation, which Nix has not built before.
func replicaSetEnv(t testing.TB, size int64, nonce string) []string {
	t.Helper()
	mod, err := testutil.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	set := testutil.PackageSet{Base: filepath.Join(mod, "nix", "pkgs"), Big: map[string]int64{"big": size}, Nonce: nonce}
	if err := set.Write(dir); err != nil {
		t.Fatal(err)
	}
	pop := filepath.Join(t.TempDir(), "popularity.json")
	if err := os.WriteFile(pop, []byte(`{"hello": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"NIXERY_PKGS_PATH=" + dir, "NIX_POPULARITY_URL=" + pop}
}

// largestLayer returns the manifest's largest layer.
func largestLayer(m *testutil.Manifest) v1.Descriptor {
	var big v1.Descriptor
	for _, l := range m.Layers {
		if l.Size > big.Size {
			big = l
		}
	}
	return big
}

// checkBucket reads every blob in w's bucket and fails t for each whose
// bytes do not hash to its name, for every object under tmp/ (which no
// upload uses any more) and for every multipart upload left open anywhere
// (the README: a large blob is uploaded to its digest's key and completed
// at commit). It returns the number of blobs and their bytes.
func checkBucket(t testing.TB, w *testutil.SeaweedFS) (n int, size int64) {
	t.Helper()
	ctx := t.Context()
	w.SetEnv(t)
	s, err := s3store.New(ctx, s3store.Options{Bucket: w.Bucket, Endpoint: w.Endpoint, Region: w.Region})
	if err != nil {
		t.Fatal(err)
	}
	err = s.List(ctx, func(b layers.BlobInfo) error {
		rc, err := s.Open(ctx, b.Digest)
		if err != nil {
			return err
		}
		defer rc.Close()
		h, m, err := v1.SHA256(rc)
		if err != nil {
			return fmt.Errorf("reading %s: %w", s.Key(b.Digest), err)
		}
		if h != b.Digest || m != b.Size {
			t.Errorf("the bucket's %s is corrupt: %d bytes (listed %d) hashing to %s", s.Key(b.Digest), m, b.Size, h)
		}
		n++
		size += m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := s.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(w.Bucket), Prefix: aws.String("tmp/")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range tmp.Contents {
		t.Errorf("left in the bucket after the uploads completed: %s (%d bytes)", aws.ToString(o.Key), aws.ToInt64(o.Size))
	}
	ups, err := s.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(w.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		t.Errorf("a multipart upload left open after the uploads completed: %s (%s)", aws.ToString(u.Key), aws.ToString(u.UploadId))
	}
	return n, size
}

// TestS3ReplicasSameBuild: two replicas asked for the same cold image at
// the same moment (its big package new to Nix too) both build it (builds
// are not coordinated), and give
// the same manifest, byte for byte, and the same layers; every blob in
// the bucket then hashes to its name, the 20 MiB layer (a multipart
// upload) included, and no upload is left open. Then podman pulls
// the image through HAProxy in front of them and a third replica, and
// runs a program of it.
func TestS3ReplicasSameBuild(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "podman", "haproxy")
	w := testutil.StartSeaweedFS(t)
	env := replicaSetEnv(t, 20<<20, fmt.Sprint(time.Now().UnixNano())) // cold for Nix too
	var rs []*faultServer
	for range 3 {
		rs = append(rs, startS3(t, bin, t.TempDir(), w, env...))
	}
	testSameBuild(t, rs, s3store.DefaultPartSize, "a part", func() int {
		n, size := checkBucket(t, w)
		t.Logf("the bucket holds %d blobs of %d bytes, each verified", n, size)
		return n
	})
}

// testSameBuild: two of the three replicas rs, asked for the same cold
// image at the same moment, both build it (both run Nix) with the same
// manifest, whose largest layer is larger than an upload's chunk (chunk,
// named what); both then serve every blob, every body checked; blobs()
// verifies every blob in the bucket and counts them, at least the image's
// layers and config; podman runs the image through HAProxy in front of
// the three, and at least two replicas answer it. It returns how many
// redirects the replicas gave podman.
func testSameBuild(t *testing.T, rs []*faultServer, chunk int64, what string, blobs func() int) (redirects int) {
	t.Helper()
	ctx := t.Context()
	const image = "hello/big"
	ms := make([]*testutil.Manifest, 2)
	errs := make([]error, 2)
	marks := []int{rs[0].Mark(), rs[1].Mark()}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ms {
		wg.Go(func() {
			<-start
			ms[i], errs[i] = testutil.GetManifest(ctx, rs[i].Client, rs[i].URL("/v2/"+image+"/manifests/latest"), testutil.MediaTypeDockerManifest)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		if n := rs[i].nixRuns(marks[i]); n == 0 {
			t.Errorf("replica %d ran no Nix for the cold image: it did not build it", i)
		}
	}
	if !bytes.Equal(ms[0].Raw, ms[1].Raw) {
		t.Errorf("the two replicas built different manifests:\n%s\n%s", ms[0].Raw, ms[1].Raw)
	}
	if ms[0].Config.Digest != ms[1].Config.Digest || !slices.Equal(ms[0].LayerDigests(), ms[1].LayerDigests()) {
		t.Errorf("the two replicas built different images: config %s and %s, layers %v and %v",
			ms[0].Config.Digest, ms[1].Config.Digest, ms[0].LayerDigests(), ms[1].LayerDigests())
	}
	if big := largestLayer(ms[0]); big.Size <= chunk {
		t.Fatalf("the largest layer has %d bytes, not more than %s (%d): no multi-request upload", big.Size, what, chunk)
	}
	// Every blob of the image from both, every body checked.
	for i := range ms {
		rs[i].p.Client = following
		if _, err := rs[i].pull(ctx, image); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	n := blobs()
	t.Logf("both replicas built %s (%d layers, %d bytes); the bucket holds %d blobs", ms[0].Digest, len(ms[0].Layers), ms[0].LayerBytes(), n)
	if n < len(ms[0].Layers)+1 {
		t.Errorf("the bucket holds %d blobs, fewer than the image's %d layers and config", n, len(ms[0].Layers))
	}

	// podman through the balancer.
	lb := startHAProxy(t, replicaAddrs(rs))
	marks = []int{rs[0].Mark(), rs[1].Mark(), rs[2].Mark()}
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	podman := privatePodman(t)
	out := mustRun(pctx, t, podman(append(podmanRun, "--network", "none", "--tls-verify=false", localhostRef(lb, image), "hello")...)...)
	if !strings.Contains(out, "Hello, world!") {
		t.Errorf("podman run hello through the balancer printed %q", out)
	}
	served := 0
	for i, r := range rs {
		log := r.LogSince(marks[i])
		k := strings.Count(log, "path=/v2/"+image+"/")
		t.Logf("replica %d answered %d of podman's requests", i, k)
		if k > 0 {
			served++
		}
		redirects += strings.Count(log, "status=307")
	}
	if served < 2 {
		t.Errorf("%d replicas answered podman's requests through the balancer, want at least 2", served)
	}
	return redirects
}

// A countingProxy forwards the TCP connections made to Addr to a server
// and counts the bytes the server sends back, passing them on at most at
// a rate per connection (a slower network), so that a test can see which
// server is sending a blob and how much of it has gone.
type countingProxy struct {
	Addr string
	sent atomic.Int64
}

// startCountingProxy forwards to target at rate bytes per second per
// connection (0: as fast as it goes), until cleanup.
func startCountingProxy(t *testing.T, target string, rate int64) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &countingProxy{Addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c, target, rate)
		}
	}()
	return p
}

func (p *countingProxy) forward(c net.Conn, target string, rate int64) {
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return // as a host that is down: the connection closes
	}
	defer s.Close()
	go func() {
		io.Copy(s, c)
		s.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	for {
		k, err := s.Read(buf)
		if k > 0 {
			if _, err := c.Write(buf[:k]); err != nil {
				return
			}
			p.sent.Add(int64(k))
			if rate > 0 {
				time.Sleep(time.Duration(int64(k) * int64(time.Second) / rate))
			}
		}
		if err != nil {
			return
		}
	}
}

// TestS3ReplicasKillDuringPull: three replicas that send blobs themselves
// (NIXERY_BLOB_REDIRECT=false), each behind a counting proxy at 16 MB/s,
// behind HAProxy. While Docker pulls an image with a 48 MiB layer through
// the balancer, the replica sending that layer is killed with SIGKILL
// once it has sent a quarter of it: Docker's retry (or, if Docker gives
// up, the user's, once) gets the image from the others, it runs, and
// every blob in the bucket still hashes to its name.
func TestS3ReplicasKillDuringPull(t *testing.T) {
	bin := requireFaultTools(t)
	testutil.RequireTools(t, "docker", "haproxy")
	w := testutil.StartSeaweedFS(t)
	ctx := t.Context()
	env := append(replicaSetEnv(t, 48<<20, ""), "NIXERY_BLOB_REDIRECT=false")
	var rs []*faultServer
	var ps []*countingProxy
	var addrs []string
	for range 3 {
		r := startS3(t, bin, t.TempDir(), w, env...)
		p := startCountingProxy(t, r.Addr, 16<<20)
		rs, ps, addrs = append(rs, r), append(ps, p), append(addrs, p.Addr)
	}
	lb := startHAProxy(t, addrs)
	const image = "hello/big"
	// Built first, through the balancer; the pull then finds it.
	m, err := testutil.GetManifest(ctx, http.DefaultClient, "http://"+lb+"/v2/"+image+"/manifests/latest", testutil.MediaTypeDockerManifest)
	if err != nil {
		t.Fatal(err)
	}
	big := largestLayer(m)
	if rest := m.LayerBytes() - big.Size + m.Config.Size; big.Size < 48<<20 || rest >= big.Size/4 {
		t.Fatalf("the big layer has %d bytes, the rest of the image %d: a replica that sent a quarter of the layer's bytes may not be sending it", big.Size, rest)
	}

	ref := dockerRef(t, lb, image)
	dctx, cancel := context.WithTimeout(ctx, 2*pullTimeout)
	defer cancel()
	var before []int64
	var marks []int
	for i, p := range ps {
		before, marks = append(before, p.sent.Load()), append(marks, rs[i].Mark())
	}
	type result struct {
		out string
		err error
	}
	pulled := make(chan result, 1)
	go func() {
		out, err := runCmd(dctx, "docker", "pull", ref)
		pulled <- result{out, err}
	}()
	victim, atKill := -1, int64(0)
	for victim < 0 {
		select {
		case r := <-pulled:
			t.Fatalf("the pull ended (%v) before a replica had sent a quarter of the big layer:\n%s", r.err, r.out)
		case <-time.After(10 * time.Millisecond):
		}
		for i, p := range ps {
			if d := p.sent.Load() - before[i]; d > big.Size/4 {
				victim, atKill = i, d
				break
			}
		}
	}
	rs[victim].Kill()
	t.Logf("killed replica %d (%s) with SIGKILL after it had sent %d bytes during the pull; the big layer %s has %d", victim, rs[victim].Addr, atKill, big.Digest, big.Size)
	r := <-pulled
	if r.err != nil {
		t.Logf("docker pull failed after the kill (%v), pulling again as a user would:\n%s", r.err, r.out)
		r.out = mustRun(dctx, t, "docker", "pull", ref)
	}
	t.Logf("docker pull:\n%s", testutil.Tail(r.out, 20))
	// The kill landed during the big layer: the victim never logged its
	// request as done, and another replica sent it (again, or the rest).
	blobPath := "path=/v2/" + image + "/blobs/" + big.Digest.String()
	if strings.Contains(rs[victim].LogSince(marks[victim]), blobPath) {
		t.Errorf("the killed replica logged the big layer's request as done: the kill came after it was sent")
	}
	resent := false
	for i, r := range rs {
		if i != victim && strings.Contains(r.LogSince(marks[i]), blobPath) {
			resent = true
			t.Logf("replica %d sent the big layer after the kill: %s", i, regexp.MustCompile(`.*`+regexp.QuoteMeta(blobPath)+`.*`).FindString(r.LogSince(marks[i])))
		}
	}
	if !resent {
		t.Errorf("no other replica logged a request of the big layer")
	}
	if out := mustRun(dctx, t, "docker", "run", "--rm", "--network", "none", ref, "hello"); !strings.Contains(out, "Hello, world!") {
		t.Errorf("docker run hello after the pull printed %q", out)
	}
	n, size := checkBucket(t, w)
	t.Logf("the bucket holds %d blobs of %d bytes, each verified", n, size)
}
