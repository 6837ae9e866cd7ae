package main

// The end-to-end test's server harness: one `nixery serve`, started with
// testutil's launcher, and what the scenarios read from its request log.

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixery-go/nixery/internal/testutil"
)

// A server is a running `nixery serve`.
type server struct {
	*testutil.Nixery
}

// startServer builds the nixery binary and serves the bundled package set
// on a free loopback port with a temporary storage directory, once /v2/
// answers. At cleanup it stops the server with SIGTERM and fails the test
// unless it shut down cleanly (see testutil.ServeNixery).
func startServer(t *testing.T) *server {
	t.Helper()
	return &server{testutil.ServeNixery(t, testutil.NixeryOptions{})}
}

// blobDigest matches a blob request in the server's request log, whatever
// the log format: the digest that follows "/blobs/" in the request path.
var blobDigest = regexp.MustCompile(`/blobs/(sha256:[0-9a-f]{64})`)

// blobsFetchedSince returns the blobs the server was asked to GET after
// the log mark, each once.
//
// A request is logged when its response is done, which may be a moment
// after the client has finished: it waits up to five seconds for every blob
// in want to show up, then a little longer for any it did not expect.
func (s *server) blobsFetchedSince(t *testing.T, mark int, want []string) []string {
	t.Helper()
	read := func() []string {
		var got []string
		for _, line := range strings.Split(s.LogSince(mark), "\n") {
			if strings.Contains(line, "HEAD") {
				continue
			}
			for _, m := range blobDigest.FindAllStringSubmatch(line, -1) {
				if !slices.Contains(got, m[1]) {
					got = append(got, m[1])
				}
			}
		}
		return got
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		got := read()
		if !slices.ContainsFunc(want, func(d string) bool { return !slices.Contains(got, d) }) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	got := read()
	if len(got) == 0 {
		t.Errorf("the server log shows no blob requests since the mark; it must log one line per request with its path")
	}
	return got
}

// nixRunsSince counts the Nix processes the server logged after the log
// mark.
func (s *server) nixRunsSince(mark int) int {
	return strings.Count(s.LogSince(mark), `msg="nix command"`)
}

// Mark returns the log mark once the log has been quiet for 200 ms (at
// most five seconds): the server writes its log in the background, so
// lines of requests that have been answered can still be on their way,
// and they must not count as coming after the mark.
func (s *server) Mark() int {
	n := s.Nixery.Mark()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		m := s.Nixery.Mark()
		if m == n {
			break
		}
		n = m
	}
	return n
}
