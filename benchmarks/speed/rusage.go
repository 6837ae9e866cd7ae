package speed

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Usage is the resource use of a finished child process.
type Usage struct {
	// MaxRSS is the peak resident set size in bytes (ru_maxrss).
	MaxRSS int64
	// User and System are the CPU times.
	User, System time.Duration
	// Wall is the time from start to exit, when measured by [Run].
	Wall time.Duration
}

// ErrNoUsage is returned by [UsageOf] when the process state carries no
// rusage (the process has not exited, or the platform does not record it).
var ErrNoUsage = errors.New("speed: no resource usage for process")

// UsageOf returns the resource use recorded in the state of an exited
// process, for example cmd.ProcessState after cmd.Wait. Linux reports
// ru_maxrss in KiB; the result is in bytes.
func UsageOf(ps *os.ProcessState) (Usage, error) {
	if ps == nil {
		return Usage{}, ErrNoUsage
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return Usage{}, ErrNoUsage
	}
	return Usage{
		MaxRSS: ru.Maxrss * 1024,
		User:   ps.UserTime(),
		System: ps.SystemTime(),
	}, nil
}

// Run runs cmd to completion and returns its resource use. The command's
// error, if any, is returned along with the usage.
func Run(cmd *exec.Cmd) (Usage, error) {
	start := time.Now()
	err := cmd.Run()
	u, uerr := UsageOf(cmd.ProcessState)
	u.Wall = time.Since(start)
	if err != nil {
		return u, err
	}
	return u, uerr
}

// selfCPU is the CPU time (user and system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
