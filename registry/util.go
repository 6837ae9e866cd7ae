package registry

import (
	"io"
	"net/http"
	"sync"
)

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
