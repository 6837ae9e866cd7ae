package main

// The end-to-end test's clients: plain HTTP requests to the registry, the
// manifest and config they return, and the commands that run Docker and the
// other clients.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/testutil"
)

// fileDigest is the OCI digest of a file's content.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}

// conformanceSummary is what parseConformance reads from the suite's report.
type conformanceSummary struct {
	status                       string              // "Pass" or "Fail"
	pass, fail, errors, disabled int                 // the result counts
	results                      map[string][]string // test name (below "OCI Conformance Test/") to its results
}

// parseConformance reads the report the conformance suite prints:
//
//	Test results
//	OCI Conformance Test: Pass
//	  OCI Conformance Test/ping: Pass
//	...
//	OCI Conformance Result: Pass
//	  Pass..........................:         14
//	  FAIL..........................:          0
func parseConformance(out string) (*conformanceSummary, error) {
	s := &conformanceSummary{results: map[string][]string{}}
	counts := map[string]*int{"Pass": &s.pass, "FAIL": &s.fail, "Error": &s.errors, "Disabled": &s.disabled}
	sawCounts := false
	inResult := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case s.status == "" && strings.HasPrefix(line, "OCI Conformance Test: "):
			s.status = strings.TrimPrefix(line, "OCI Conformance Test: ")
		case strings.HasPrefix(line, "OCI Conformance Test/"):
			name, result, ok := strings.Cut(strings.TrimPrefix(line, "OCI Conformance Test/"), ": ")
			if ok {
				s.results[name] = append(s.results[name], result)
			}
		case strings.HasPrefix(line, "OCI Conformance Result: "):
			inResult = true
		case inResult && strings.Contains(line, "...:"):
			// "Pass..........................:         14"
			name, _, _ := strings.Cut(line, ".")
			v, err := strconv.Atoi(strings.TrimSpace(line[strings.LastIndex(line, ":")+1:]))
			if p, ok := counts[name]; ok && err == nil {
				*p = v
				sawCounts = true
			}
		case inResult && line == "":
			inResult = false
		}
	}
	if s.status == "" {
		return nil, errors.New(`no "OCI Conformance Test:" line in the report`)
	}
	if !sawCounts {
		return nil, errors.New("no result counts in the report")
	}
	return s, nil
}

// response is an HTTP response read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the server.
func (s *server) do(ctx context.Context, t *testing.T, method, path string, header http.Header) *response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, s.URL(path), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}
}

// registryError decodes the spec's error body and returns its first error.
func (r *response) registryError(t *testing.T) registryError {
	t.Helper()
	var body struct{ Errors []registryError }
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 {
		t.Errorf("status %d: body is not the spec's error JSON: %.300s", r.status, r.body)
		return registryError{}
	}
	return body.Errors[0]
}

type registryError struct {
	Code    string
	Message string
}

// manifest fetches and checks the manifest of name at reference (a tag or
// digest) in the media type accept.
func (s *server) manifest(ctx context.Context, t *testing.T, name, reference, accept string) *testutil.Manifest {
	t.Helper()
	path := "/v2/" + name + "/manifests/" + reference
	m, err := testutil.GetManifest(ctx, s.Client, s.URL(path), accept)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("Content-Type"); got != accept || string(m.MediaType) != accept {
		t.Fatalf("GET %s with Accept %s: Content-Type %q, mediaType %q", path, accept, got, m.MediaType)
	}
	if got := m.Header.Get("Docker-Content-Digest"); got != m.Digest.String() {
		t.Errorf("GET %s: Docker-Content-Digest %q, body digest %s", path, got, m.Digest)
	}
	if m.SchemaVersion != 2 || len(m.Layers) == 0 {
		t.Fatalf("GET %s: schemaVersion %d with %d layers", path, m.SchemaVersion, len(m.Layers))
	}
	return m
}

// config fetches and decodes the config of m.
func (s *server) config(ctx context.Context, t *testing.T, name string, m *testutil.Manifest) *v1.ConfigFile {
	t.Helper()
	resp := s.do(ctx, t, http.MethodGet, "/v2/"+name+"/blobs/"+m.Config.Digest.String(), nil)
	if resp.status != http.StatusOK {
		t.Fatalf("config %s: status %d", m.Config.Digest, resp.status)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(resp.body))
	if err != nil {
		t.Fatalf("config %s: %v", m.Config.Digest, err)
	}
	return cfg
}

// splitLayers returns the layers of b that a has (shared) and those it
// lacks (fresh), in b's order.
func splitLayers(a, b *testutil.Manifest) (shared, fresh []string) {
	have := a.LayerDigests()
	for _, d := range b.LayerDigests() {
		if slices.Contains(have, d) {
			shared = append(shared, d)
		} else {
			fresh = append(fresh, d)
		}
	}
	return shared, fresh
}

// firstFreshIndex is the position of b's first layer that a lacks.
func firstFreshIndex(b, a *testutil.Manifest) int {
	have := a.LayerDigests()
	for i, d := range b.LayerDigests() {
		if !slices.Contains(have, d) {
			return i
		}
	}
	return len(b.Layers)
}

// sizeOf is the total size of the layers of m among digests.
func sizeOf(m *testutil.Manifest, digests []string) int64 {
	var n int64
	for _, l := range m.Layers {
		if slices.Contains(digests, l.Digest.String()) {
			n += l.Size
		}
	}
	return n
}

// shortDigests returns the 12-hex-digit prefixes clients print, sorted.
func shortDigests(digests []string) []string {
	var s []string
	for _, d := range digests {
		s = append(s, strings.TrimPrefix(d, "sha256:")[:12])
	}
	return sorted(s)
}

// dockerProgress returns the layer IDs for which docker pull printed
// status, e.g. "0123456789ab: Already exists".
func dockerProgress(out, status string) []string {
	re := regexp.MustCompile(`(?m)^([0-9a-f]{12}): ` + regexp.QuoteMeta(status) + `\s*$`)
	var ids []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// removeStaleImages removes images that an earlier run pulled from a
// loopback registry under the test's names, so their layers cannot be
// mistaken for shared ones.
func removeStaleImages(ctx context.Context, t *testing.T, names ...string) {
	t.Helper()
	out := mustRun(ctx, t, "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	stale := regexp.MustCompile(`^(127\.0\.0\.1|localhost):\d+/(.*):(\S+) (\S+)$`)
	var refs []string
	for _, line := range strings.Split(out, "\n") {
		if m := stale.FindStringSubmatch(strings.TrimSpace(line)); m != nil && slices.Contains(names, m[2]) {
			ref := line[:strings.LastIndexByte(line, ' ')]
			if m[3] == "<none>" {
				ref = m[4] // untagged (another platform's pull took its tag): by ID
			}
			refs = append(refs, ref)
		}
	}
	if len(refs) > 0 {
		t.Logf("removing stale images %v", refs)
		dockerRemove(t, refs...)
	}
}

// dockerRemove removes images from the Docker engine, ignoring ones that
// are not there.
func dockerRemove(t testing.TB, refs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for _, ref := range refs {
		if out, err := runCmd(ctx, "docker", "image", "rm", "--force", ref); err != nil && !strings.Contains(out, "No such image") {
			t.Errorf("docker image rm %s: %v\n%s", ref, err, out)
		}
	}
}

// localhostRef is the reference of repository name on the registry at
// addr (127.0.0.1:port) as localhost:port/name, which Docker and podman
// reach over plain HTTP.
func localhostRef(addr, name string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "localhost:" + port + "/" + name
}

// dockerRef is [localhostRef], with the image removed from Docker now and
// at cleanup.
func dockerRef(t testing.TB, addr, name string) string {
	ref := localhostRef(addr, name)
	dockerRemove(t, ref)
	t.Cleanup(func() { dockerRemove(t, ref) })
	return ref
}

// runCmd runs a program and returns its combined output. The context
// bounds it; WaitDelay bounds a child that keeps the output open.
func runCmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return string(out), err
}

// mustRun runs a program and fails the test with its output if it fails.
func mustRun(ctx context.Context, t testing.TB, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := runCmd(ctx, args...)
	if err != nil {
		t.Fatalf("%s: %v (after %v)\n%s", strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond), testutil.Tail(out, 60))
	}
	return out
}

// withoutPrefix drops the environment entries that start with any prefix.
func withoutPrefix(env []string, prefixes ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(e string) bool {
		return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(e, p) })
	})
}

// sha256Digest is the OCI digest of b.
func sha256Digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}
