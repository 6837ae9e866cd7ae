package registry

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// recorder remembers the status and size of a response for the request log
// and bounds how long writing it may make no progress (see
// [WithWriteTimeout]). It keeps the io.ReaderFrom of the underlying writer,
// so that blobs are still sent with sendfile.
type recorder struct {
	http.ResponseWriter
	status  int
	n       int64
	timeout time.Duration // <= 0: no write deadlines
}

// writeChunk is how much of a blob is sent under one write deadline. A
// client that reads more slowly than writeChunk per write timeout still
// gets its blob: a chunk that times out after some progress gets another
// deadline.
const writeChunk = 1 << 20

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func getRecorder(w http.ResponseWriter, timeout time.Duration) *recorder {
	rw := recorders.Get().(*recorder)
	rw.ResponseWriter, rw.status, rw.n, rw.timeout = w, 0, 0, timeout
	return rw
}

func putRecorder(rw *recorder) {
	rw.ResponseWriter = nil
	recorders.Put(rw)
}

// start records the status of a response that begins and gives its writes
// a deadline.
func (rw *recorder) start(code int) {
	if rw.status == 0 {
		rw.status = code
		rw.extend()
	}
}

// extend sets the write deadline to the timeout from now. Writers that
// have no deadlines (an httptest.ResponseRecorder) are left alone.
func (rw *recorder) extend() {
	if rw.timeout > 0 {
		_ = http.NewResponseController(rw.ResponseWriter).SetWriteDeadline(time.Now().Add(rw.timeout))
	}
}

func (rw *recorder) WriteHeader(code int) {
	rw.start(code)
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	rw.start(http.StatusOK)
	n, err := rw.ResponseWriter.Write(p)
	rw.n += int64(n)
	return n, err
}

// ReadFrom lets http.ServeContent use sendfile through the recorder. It
// sends src in chunks of writeChunk bytes, each under a new write
// deadline, so that a response is cut only when its client accepts no
// bytes for a whole write timeout: a chunk that times out after some of it
// was sent is continued under a new deadline.
func (rw *recorder) ReadFrom(src io.Reader) (int64, error) {
	rw.start(http.StatusOK)
	// io.CopyN (http.ServeContent) hands over the file in an
	// io.LimitedReader: the chunks are cut from the file itself, so
	// that sendfile still sees an *os.File.
	limit := int64(-1)
	if lr, ok := src.(*io.LimitedReader); ok {
		src, limit = lr.R, lr.N
		defer func() { lr.N = limit }()
	}
	var total int64
	for limit != 0 {
		chunk := &io.LimitedReader{R: src, N: writeChunk}
		if limit > 0 {
			chunk.N = min(limit, writeChunk)
		}
		want := chunk.N
		rw.extend()
		n, err := rw.copy(chunk)
		total += n
		rw.n += n
		if limit > 0 {
			limit -= n
		}
		if err != nil {
			if n > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				continue // slow, not stalled
			}
			return total, err
		}
		if n < want {
			break // the end of src
		}
	}
	return total, nil
}

// copy sends one chunk to the underlying writer, with sendfile when it can.
func (rw *recorder) copy(chunk *io.LimitedReader) (int64, error) {
	if rf, ok := rw.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(chunk)
	}
	return io.Copy(rw.ResponseWriter, chunk)
}

// Unwrap gives http.ResponseController the underlying writer.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *recorder) Flush() {
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
