package registry

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// singleflight runs one function per key at a time and hands its result to
// every caller that asked meanwhile. Unlike golang.org/x/sync/singleflight a
// waiting caller can give up when its context ends, without cancelling the
// work for the others.
type singleflight[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func (s *singleflight[T]) do(ctx context.Context, key string, fn func() (T, error)) (T, error) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*call[T]{}
	}
	c, ok := s.calls[key]
	if !ok {
		c = &call[T]{done: make(chan struct{})}
		s.calls[key] = c
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.calls, key)
				s.mu.Unlock()
				close(c.done)
			}()
			c.val, c.err = fn()
		}()
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// recorder remembers the status and size of a response for the request log.
// It keeps the io.ReaderFrom of the underlying writer, so that blobs are
// still sent with sendfile.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func getRecorder(w http.ResponseWriter) *recorder {
	rw := recorders.Get().(*recorder)
	rw.ResponseWriter, rw.status, rw.n = w, 0, 0
	return rw
}

func putRecorder(rw *recorder) {
	rw.ResponseWriter = nil
	recorders.Put(rw)
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(p)
	rw.n += int64(n)
	return n, err
}

// ReadFrom lets http.ServeContent use sendfile through the recorder.
func (rw *recorder) ReadFrom(src io.Reader) (int64, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := rw.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(rw.ResponseWriter, src)
	}
	rw.n += n
	return n, err
}

// Unwrap gives http.ResponseController the underlying writer.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *recorder) Flush() {
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
