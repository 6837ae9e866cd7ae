package nix

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// The errors of this package say what kind of failure they are by the
// standard error they match with [errors.Is], so that a caller (the
// registry, say) can classify them without knowing this package:
//
//	fs.ErrNotExist            [*UnknownPackagesError], [ErrUnknownTag], [ErrInvalidTag]
//	fs.ErrInvalid             [*InvalidNameError]
//	errors.ErrUnsupported     [*UnsupportedSystemError]
//	context.DeadlineExceeded  [ErrTimeout]
//
// A [*BusyError] matches none of them: it says when to try again with its
// RetryAfter method instead. Everything else ([*BuildError],
// [ErrNixNotFound]) is a failure of the server, not of the request.

// ErrTimeout is returned (wrapped) when Nix ran longer than the builder's
// timeout and was stopped. It matches context.DeadlineExceeded.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string        { return "nix: build timed out" }
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// BusyError is returned by [Builder.Build] when every slot runs Nix and
// the queue of Builds waiting for one is full. The request did nothing
// wrong: it may be sent again after RetryAfter.
type BusyError struct {
	Running int           // the builder's slots, all taken
	Queued  int           // the Builds waiting, as many as the queue holds
	After   time.Duration // the estimate RetryAfter returns
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("nix: too many builds: %d running and %d waiting; try again in %s", e.Running, e.Queued, e.After.Round(time.Second))
}

// RetryAfter estimates when the queue has room again.
func (e *BusyError) RetryAfter() time.Duration { return e.After }

// ErrNixNotFound is returned (wrapped) when the Nix binaries cannot be found.
var ErrNixNotFound = errors.New("nix: Nix is not installed; install it (on Debian: apt-get install nix-bin, then run .ci/setup)")

// UnknownPackagesError reports every requested name that the package set
// does not have, sorted.
type UnknownPackagesError struct {
	Names []string
}

func (e *UnknownPackagesError) Error() string {
	return "nix: unknown packages: " + strings.Join(e.Names, ", ")
}

// Is reports that unknown packages are a case of fs.ErrNotExist.
func (e *UnknownPackagesError) Is(target error) bool { return target == fs.ErrNotExist }

// InvalidNameError reports a package name that does not follow the
// attribute grammar. Such a name never reaches Nix.
type InvalidNameError struct {
	Name   string
	Reason string
}

func (e *InvalidNameError) Error() string {
	name := e.Name
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return fmt.Sprintf("nix: invalid package name %q: %s", name, e.Reason)
}

// Is reports that an invalid name is a case of fs.ErrInvalid.
func (e *InvalidNameError) Is(target error) bool { return target == fs.ErrInvalid }

// UnsupportedSystemError reports a system the builder cannot build for.
type UnsupportedSystemError struct {
	System string
	Reason string
}

func (e *UnsupportedSystemError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("nix: unsupported system %q", e.System)
	}
	return fmt.Sprintf("nix: unsupported system %q: %s", e.System, e.Reason)
}

// Is reports that an unsupported system is a case of errors.ErrUnsupported.
func (e *UnsupportedSystemError) Is(target error) bool { return target == errors.ErrUnsupported }

// BuildError reports a failed Nix evaluation or build. Log holds the tail of
// Nix's standard error.
type BuildError struct {
	Op  string // "evaluate", "build" or "query"
	Err error  // the process error
	Log string // the last lines of Nix's stderr
}

func (e *BuildError) Error() string {
	msg := "nix: " + e.Op + " failed"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if last := lastLine(e.Log); last != "" {
		msg += ": " + truncate(last, maxErrorLine)
	}
	return msg
}

func (e *BuildError) Unwrap() error { return e.Err }

// maxErrorLine bounds the line of Nix's log that a [*BuildError]'s message
// quotes.
const maxErrorLine = 512

// lastLine returns the line of a Nix log that best says what went wrong:
// the last one that starts with "error:" (Nix prints the innermost error
// last), else the last non-empty line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if msg, ok := strings.CutPrefix(l, "error:"); ok && strings.TrimSpace(msg) != "" {
			return l
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}
