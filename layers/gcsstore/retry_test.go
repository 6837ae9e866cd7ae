package gcsstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nixery-go/nixery/internal/testutil"
	"github.com/nixery-go/nixery/internal/testutil/objstoretest"
	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/layers/gcsstore"
)

// A fault is what faulty does to one chunk of a resumable upload.
type fault int

const (
	pass   fault = iota
	refuse       // answer 503 without sending the chunk on
	cut          // send the chunk on, then lose the answer (a reset connection)
)

// faulty sits in front of fake-gcs-server and breaks chunks of resumable
// uploads as plan says (chunk numbers from 1). It answers the status
// queries ("Content-Range: bytes */N") itself, with the server's own last
// answer to a chunk that reached it: fake-gcs-server v1.56.1 answers them
// with 200 and an object of the bytes so far, where GCS answers as it does
// a chunk (308 with the Range it holds, or the object once it is whole).
type faulty struct {
	plan func(chunk int) fault

	mu                 sync.Mutex
	chunks, queries    int
	deletes            int
	status             int // the server's last answer to a chunk; 0 before any
	rangeHdr           string
	body               []byte
	refused, cutChunks []int
}

func (f *faulty) RoundTrip(req *http.Request) (*http.Response, error) {
	cr := req.Header.Get("Content-Range")
	switch {
	case req.Method == "DELETE" && strings.Contains(req.URL.RawQuery, "upload_id="):
		f.mu.Lock()
		f.deletes++
		f.mu.Unlock()
		return http.DefaultTransport.RoundTrip(req)
	case req.Method != "PUT" || cr == "":
		return http.DefaultTransport.RoundTrip(req)
	case strings.HasPrefix(cr, "bytes */"):
		f.mu.Lock()
		defer f.mu.Unlock()
		f.queries++
		if req.Body != nil {
			req.Body.Close()
		}
		status, h := f.status, http.Header{}
		if status == 0 {
			status = http.StatusPermanentRedirect // nothing yet
		}
		if f.rangeHdr != "" {
			h.Set("Range", f.rangeHdr)
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(f.body)), Request: req}, nil
	}
	f.mu.Lock()
	f.chunks++
	n := f.chunks
	fa := f.plan(n)
	f.mu.Unlock()
	if fa == refuse {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		f.mu.Lock()
		f.refused = append(f.refused, n)
		f.mu.Unlock()
		body := `{"error":{"code":503,"message":"injected: backend unavailable"}}`
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.rangeHdr, f.body = resp.StatusCode, resp.Header.Get("Range"), body
	if fa == cut {
		f.cutChunks = append(f.cutChunks, n)
		return nil, errors.New("injected: connection reset by peer")
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// only breaks chunk n with fa and passes the others.
func only(n int, fa fault) func(int) fault {
	return func(i int) fault {
		if i == n {
			return fa
		}
		return pass
	}
}

// TestGCSChunkRetry breaks chunks of resumable uploads on their way to a
// real fake-gcs-server: a chunk refused with 503 is sent again, a chunk
// whose answer is lost is not (the status query says the server has it),
// a lost answer to the last chunk still finishes the upload, and a
// session that keeps failing gives up with the server's error, cancels the
// session and leaves no object.
func TestGCSChunkRetry(t *testing.T) {
	g := testutil.StartFakeGCS(t)
	const chunk = 256 << 10
	data := objstoretest.RandomBytes(4*chunk + 1000) // 5 chunks
	h := objstoretest.Digest(data)

	for _, c := range []struct {
		name            string
		plan            func(int) fault
		ok              bool
		chunks, queries int
		refused, cut    []int
		wantErr         string // with !ok
	}{
		{name: "Refused", plan: only(2, refuse), ok: true, chunks: 6, queries: 1, refused: []int{2}},
		{name: "AnswerLost", plan: only(2, cut), ok: true, chunks: 5, queries: 1, cut: []int{2}},
		{name: "LastAnswerLost", plan: only(5, cut), ok: true, chunks: 5, queries: 1, cut: []int{5}},
		{name: "RefusedTwiceThenLost", plan: func(n int) fault {
			switch n {
			case 3, 4:
				return refuse
			case 5:
				return cut
			}
			return pass
		}, ok: true, chunks: 7, queries: 3, refused: []int{3, 4}, cut: []int{5}},
		{name: "GivesUp", plan: func(n int) fault {
			if n >= 2 {
				return refuse
			}
			return pass
		}, chunks: 6, queries: 4, refused: []int{2, 3, 4, 5, 6}, wantErr: "503"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			f := &faulty{plan: c.plan}
			prefix := "retry-" + strings.ToLower(c.name) + "/"
			s, err := gcsstore.New(ctx, gcsstore.Options{Bucket: g.Bucket, EmulatorHost: g.Host, Prefix: prefix, ChunkSize: chunk,
				HTTPClient: &http.Client{Transport: f}})
			if err != nil {
				t.Fatal(err)
			}
			w, err := s.Create(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			err = w.Commit(h)
			f.mu.Lock()
			chunks, queries, deletes := f.chunks, f.queries, f.deletes
			refused, cutChunks := f.refused, f.cutChunks
			f.mu.Unlock()
			if chunks != c.chunks || queries != c.queries || fmt.Sprint(refused) != fmt.Sprint(c.refused) || fmt.Sprint(cutChunks) != fmt.Sprint(c.cut) {
				t.Errorf("%d chunk requests, %d status queries, refused %v, answers lost %v; want %d, %d, %v, %v",
					chunks, queries, refused, cutChunks, c.chunks, c.queries, c.refused, c.cut)
			}
			if c.ok {
				if err != nil {
					t.Fatalf("Commit: %v", err)
				}
				if got := testutil.ReadBlob(t, s, h); !bytes.Equal(got, data) {
					t.Errorf("read back %d bytes, want the %d written", len(got), len(data))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Commit = %v, want an error saying %q", err, c.wantErr)
			}
			t.Logf("the writer's error: %v", err)
			if deletes == 0 {
				t.Errorf("%d DELETEs of the upload session, want the session cancelled", deletes)
			}
			if _, err := s.Stat(ctx, h); !errors.Is(err, layers.ErrBlobUnknown) {
				t.Errorf("Stat after the failed upload: %v, want the blob unknown", err)
			}
		})
	}
}
