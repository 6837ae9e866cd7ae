package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// An ErrorCode is one of the error codes of the OCI distribution
// specification, paired with the HTTP status the registry answers it with.
// Each code is declared once, below.
type ErrorCode struct {
	Code   string // as it appears in the JSON body, e.g. "MANIFEST_UNKNOWN"
	Status int    // the HTTP status code
}

// The error codes this registry produces. UNKNOWN and UNAVAILABLE are not in
// the distribution specification's table but are what the reference
// implementation (distribution/distribution) sends for server-side failures;
// PAGINATION_NUMBER_INVALID is distribution's too, and
// NOT_FOUND answers paths outside the API. Clients act on the status.
//
// NAME_UNKNOWN is never sent: every well-formed name may be an image, and
// names whose packages do not exist are MANIFEST_UNKNOWN, as in upstream
// Nixery, because that is what a pull asks for.
var (
	CodeNameInvalid       = ErrorCode{"NAME_INVALID", http.StatusBadRequest}
	CodeNameUnknown       = ErrorCode{"NAME_UNKNOWN", http.StatusNotFound}
	CodeManifestUnknown   = ErrorCode{"MANIFEST_UNKNOWN", http.StatusNotFound}
	CodeBlobUnknown       = ErrorCode{"BLOB_UNKNOWN", http.StatusNotFound}
	CodeDigestInvalid     = ErrorCode{"DIGEST_INVALID", http.StatusBadRequest}
	CodePaginationInvalid = ErrorCode{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest}
	CodeUnsupported       = ErrorCode{"UNSUPPORTED", http.StatusMethodNotAllowed}
	CodeNotFound          = ErrorCode{"NOT_FOUND", http.StatusNotFound}
	CodeUnknown           = ErrorCode{"UNKNOWN", http.StatusInternalServerError}
	CodeUnavailable       = ErrorCode{"UNAVAILABLE", http.StatusServiceUnavailable}
)

// Error is an error the registry reports to its client. [Registry.ServeHTTP]
// renders it, in one place, as the specification's JSON body:
//
//	{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown packages: foo","detail":{...}}]}
type Error struct {
	Code    ErrorCode
	Message string
	// Detail is marshalled as the "detail" member when it is not nil.
	Detail any
	// Err is the underlying cause. It is logged, never sent to the client.
	Err error
}

func (e *Error) Error() string {
	s := e.Code.Code + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func newError(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError renders err as the spec's JSON error body. An error that is not
// an [*Error] is reported as UNKNOWN without its text.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var re *Error
	if !errors.As(err, &re) {
		re = &Error{Code: CodeUnknown, Message: "internal error", Err: err}
	}
	body, merr := json.Marshal(errorBody{Errors: []errorEntry{{
		Code:    re.Code.Code,
		Message: re.Message,
		Detail:  re.Detail,
	}}})
	if merr != nil {
		body = []byte(`{"errors":[{"code":"UNKNOWN","message":"internal error"}]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if re.Code == CodeUnsupported {
		h.Set("Allow", "GET, HEAD")
	}
	w.WriteHeader(re.Code.Status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
