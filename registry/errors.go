package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nixery-go/nixery/layers"
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
// NOT_FOUND answers paths outside the API. TOOMANYREQUESTS is the
// specification's code for a client over its limit. Clients act on the
// status.
//
// NAME_UNKNOWN is never sent: every well-formed name may be an image, and
// names whose packages do not exist are MANIFEST_UNKNOWN, as in upstream
// Nixery, because that is what a pull asks for.
var (
	CodeNameInvalid       = ErrorCode{"NAME_INVALID", http.StatusBadRequest}
	CodeManifestUnknown   = ErrorCode{"MANIFEST_UNKNOWN", http.StatusNotFound}
	CodeBlobUnknown       = ErrorCode{"BLOB_UNKNOWN", http.StatusNotFound}
	CodeDigestInvalid     = ErrorCode{"DIGEST_INVALID", http.StatusBadRequest}
	CodePaginationInvalid = ErrorCode{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest}
	CodeUnsupported       = ErrorCode{"UNSUPPORTED", http.StatusMethodNotAllowed}
	CodeNotFound          = ErrorCode{"NOT_FOUND", http.StatusNotFound}
	CodeUnknown           = ErrorCode{"UNKNOWN", http.StatusInternalServerError}
	CodeUnavailable       = ErrorCode{"UNAVAILABLE", http.StatusServiceUnavailable}
	CodeTooManyRequests   = ErrorCode{"TOOMANYREQUESTS", http.StatusTooManyRequests}
)

// DefaultRetryAfter is the Retry-After of a 503 or 429 whose cause does not
// say when to retry (a build that timed out, say).
const DefaultRetryAfter = 5 * time.Second

// Error is an error the registry reports to its client, rendered in one
// place as the specification's JSON body:
//
//	{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown packages: foo","detail":{...}}]}
type Error struct {
	Code    ErrorCode
	Message string
	// Detail is marshalled as the "detail" member when it is not nil.
	Detail any
	// Err is the underlying cause, for the server log.
	Err error
	// RetryAfter, for a 503 or a 429, is when the client may try again,
	// sent as the Retry-After header in whole seconds; zero means
	// [DefaultRetryAfter].
	RetryAfter time.Duration
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

// classify is the one place where errors from [Images] become the errors a
// client sees. The packages that raise them (nix, layers, images) say what
// kind of failure an error is by the standard error it matches with
// errors.Is:
//
//	layers.ErrInvalidDigest    DIGEST_INVALID    400
//	fs.ErrInvalid              NAME_INVALID      400  a name that names no image
//	fs.ErrNotExist             MANIFEST_UNKNOWN  404  unknown packages or tags
//	errors.ErrUnsupported      MANIFEST_UNKNOWN  404  a system the source cannot build
//	context.DeadlineExceeded   UNAVAILABLE       503  Nix ran out of time
//	a [RetryAfter] error       UNAVAILABLE       503  too busy to build now
//	anything else              UNKNOWN           500
//
// The message is the error's own text (errors of these packages are written
// to be read), with bytes that are not printable escaped and cut to
// maxMessage bytes. The delay of a [RetryAfter] error becomes the
// response's Retry-After.
func classify(err error) *Error {
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	e := &Error{Code: CodeUnknown, Message: printable(err.Error()), Err: err}
	var ra RetryAfter
	switch {
	case errors.Is(err, layers.ErrInvalidDigest):
		e.Code = CodeDigestInvalid
	case errors.Is(err, fs.ErrInvalid):
		e.Code = CodeNameInvalid
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errors.ErrUnsupported):
		e.Code = CodeManifestUnknown
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.Code = CodeUnavailable
	case errors.As(err, &ra):
		e.Code, e.RetryAfter = CodeUnavailable, ra.RetryAfter()
	}
	return e
}

// RetryAfter is an optional capability of errors from [Images]: an error
// that has it says the request may succeed if sent again after the delay
// (package nix's BusyError: every build slot taken, the queue full). It is
// answered with 503 UNAVAILABLE and that delay as Retry-After.
type RetryAfter interface {
	error
	RetryAfter() time.Duration
}

// unknown classifies an error about a blob or manifest named by digest: a
// missing one is notFound with the registry's own message and the digest as
// detail.
func unknown(err error, notFound ErrorCode, what, digest string) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	e := newError(notFound, "%s %s unknown to registry", what, digest)
	e.Detail = map[string]string{"digest": digest}
	e.Err = err
	return e
}

// maxMessage bounds the message of an error body.
const maxMessage = 1024

// printable escapes what is not printable in s (control characters,
// invalid UTF-8) as \xNN and cuts it to maxMessage bytes.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxMessage; {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || !unicode.IsPrint(r) {
			fmt.Fprintf(&b, `\x%02x`, s[i])
			i++
			continue
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	if b.Len() >= maxMessage {
		return b.String()[:maxMessage] + "..."
	}
	return b.String()
}

// truncate cuts s to n bytes for a message or log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// fail writes err as the spec's JSON error body and logs its cause: at
// Error level for server failures, at Info for the client's mistakes, at
// Debug for a server too busy (an error with a retry delay), and as
// "request cancelled" when the client went away first.
func (r *Registry) fail(w http.ResponseWriter, req *http.Request, err error) {
	re := classify(err)
	ctx := req.Context()
	switch {
	case ctx.Err() != nil:
		r.log.LogAttrs(ctx, slog.LevelInfo, "request cancelled",
			slog.String("path", truncate(req.URL.Path, maxLoggedPath)),
			slog.String("reason", context.Cause(ctx).Error()))
	case re.Err != nil:
		lvl := slog.LevelInfo
		switch {
		case re.RetryAfter > 0:
			// Shedding load: nothing is broken, and a flood of them
			// must not flood the log; the request line has the 503.
			lvl = slog.LevelDebug
		case re.Code.Status >= 500:
			lvl = slog.LevelError
		}
		r.log.LogAttrs(ctx, lvl, "request failed",
			slog.String("path", truncate(req.URL.Path, maxLoggedPath)),
			slog.String("code", re.Code.Code),
			slog.String("error", re.Err.Error()))
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
	switch re.Code.Status {
	case http.StatusMethodNotAllowed:
		h.Set("Allow", "GET, HEAD")
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		d := re.RetryAfter
		if d <= 0 {
			d = DefaultRetryAfter
		}
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(re.Code.Status)
	if req.Method != http.MethodHead {
		w.Write(body)
	}
}
