package nix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// killGrace is how long a Nix process may take to stop its builders after
// SIGTERM before its process group gets SIGKILL.
const killGrace = 3 * time.Second

// nixNice is how much lower than the server's the CPU priority (nice
// value) of Nix and its builders is: while builds run, the server still
// answers at once, with cached images and with a full queue's 503s.
const nixNice = 10

// nixPriority returns the nice value for Nix processes: the server's plus
// nixNice, at most 19.
func nixPriority() int {
	// Linux's getpriority returns 20 minus the nice value.
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return nixNice
	}
	return min(20-prio+nixNice, 19)
}

// stderrLimit bounds how much of Nix's standard error is kept in memory
// while it runs: its end, where Nix says what went wrong.
const stderrLimit = 64 << 10

// tailLines and tailBytes bound the tail of stderr that a [*BuildError]
// carries and that is logged, once, when a command fails.
const (
	tailLines = 25
	tailBytes = 4 << 10
)

// command is one Nix invocation.
type command struct {
	op   string   // "evaluate", "build" or "query", for errors
	prog string   // nix-instantiate, nix-store or nix
	args []string // arguments after prog
	// logArgs, when set, replaces args in logs (to leave out the
	// resolver expression).
	logArgs []string
	// quiet logs a failure at Debug level: the caller expects failures.
	quiet bool
	// progress, when set, also gets the command's standard error.
	progress io.Writer
}

// output is what a finished command produced.
type output struct {
	stdout []byte
	stderr string
}

// runFunc runs one command. The default is (*Builder).execNix; tests swap
// it to count invocations or to fake Nix.
type runFunc func(ctx context.Context, c command) (output, error)

// lookNix finds prog in dir, or in PATH when dir is empty.
func lookNix(dir, prog string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w (no executable %s)", ErrNixNotFound, p)
		}
		return p, nil
	}
	p, err := exec.LookPath(prog)
	if err != nil {
		return "", fmt.Errorf("%w (%s not in PATH)", ErrNixNotFound, prog)
	}
	return p, nil
}

// execNix runs c as a process group of its own with the builder's
// environment. When ctx ends, the group gets SIGTERM (Nix then stops the
// builds it started, which run in sessions of their own) and, after
// killGrace, SIGKILL.
func (b *Builder) execNix(ctx context.Context, c command) (output, error) {
	path, err := lookNix(b.opts.NixDir, c.prog)
	if err != nil {
		return output{}, err
	}
	cmd := exec.Command(path, c.args...)
	cmd.Env = b.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout bytes.Buffer
	stderr := &tailBuffer{limit: stderrLimit}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	if c.progress != nil {
		cmd.Stderr = io.MultiWriter(stderr, c.progress)
	}
	// Stop waiting for output a while after the process ended, should
	// some stray descendant keep the pipes open.
	cmd.WaitDelay = 2 * killGrace

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return output{}, fmt.Errorf("nix: starting %s: %w", c.prog, err)
	}
	// The builders Nix forks inherit its priority.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, nixPriority())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
		case <-ctx.Done():
			pgid := cmd.Process.Pid
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(killGrace):
			}
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err = cmd.Wait()
	close(done)
	wg.Wait()
	d := time.Since(start)

	out := output{stdout: stdout.Bytes(), stderr: stderr.String()}
	log := b.opts.Logger
	logArgs := c.args
	if c.logArgs != nil {
		logArgs = c.logArgs
	}
	if b.opts.OnCommand != nil {
		b.opts.OnCommand(c.op, d, err)
	}
	log.Info("nix command", "op", c.op, "cmd", c.prog, "args", logArgs, "duration", d, "err", err)
	if ctx.Err() != nil {
		// A timeout is the operator's business; a build nobody waits
		// for any more, or a server shutting down, is not a failure.
		level := slog.LevelInfo
		if errors.Is(context.Cause(ctx), ErrTimeout) {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "nix stopped", "op", c.op, "cmd", c.prog, "reason", context.Cause(ctx), "stderr", tail(out.stderr))
		return out, ctx.Err()
	}
	if err != nil {
		level := slog.LevelError
		if c.quiet {
			level = slog.LevelDebug
		}
		be := &BuildError{Op: c.op, Err: err, Log: tail(out.stderr)}
		log.Log(context.Background(), level, "nix failed", "op", c.op, "cmd", c.prog, "stderr", be.Log)
		return out, be
	}
	if out.stderr != "" {
		log.Debug("nix stderr", "op", c.op, "cmd", c.prog, "stderr", tail(out.stderr))
	}
	return out, nil
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// tail returns the end of a command's standard error: its last tailLines
// lines, cut to their last tailBytes bytes (marked by a leading "...").
func tail(s string) string {
	s = strings.TrimRight(s, "\n")
	start := len(s)
	for range tailLines {
		i := strings.LastIndexByte(s[:start], '\n')
		if i < 0 {
			start = 0
			break
		}
		start = i
	}
	s = strings.TrimPrefix(s[start:], "\n")
	if len(s) > tailBytes {
		cut := len(s) - tailBytes
		for cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut++
		}
		s = "..." + s[cut:]
	}
	return s
}

// mergeEnv returns env with NIX_CONFIG set to config followed by the
// NIX_CONFIG already in env, so an explicit setting of the operator wins
// (Nix applies the lines in order).
func mergeEnv(env []string, config string) []string {
	out := make([]string, 0, len(env)+1)
	existing := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NIX_CONFIG="); ok {
			existing = v
			continue
		}
		out = append(out, kv)
	}
	merged := strings.TrimSpace(config)
	if existing = strings.TrimSpace(existing); existing != "" {
		merged += "\n" + existing
	}
	if merged != "" {
		out = append(out, "NIX_CONFIG="+merged)
	}
	return out
}

// isTimeout reports whether err ends a command because of ctx's deadline.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded)
}

// realiseProgress reads nix-store --realise's standard error and reports
// the derivations built: "these N derivations will be built:" (or "this
// derivation will be built:") gives the total, and each "building '...'"
// line starts one more.
type realiseProgress struct {
	report      func(string, int, int)
	line        []byte
	done, total int
}

func (p *realiseProgress) Write(b []byte) (int, error) {
	for _, c := range b {
		if c != '\n' {
			if len(p.line) < 4096 {
				p.line = append(p.line, c)
			}
			continue
		}
		p.parse(string(p.line))
		p.line = p.line[:0]
	}
	return len(b), nil
}

func (p *realiseProgress) parse(line string) {
	switch {
	case strings.HasPrefix(line, "this derivation will be built"):
		p.total = 1
	case strings.HasPrefix(line, "these ") && strings.Contains(line, " derivations will be built"):
		if n, err := strconv.Atoi(strings.Fields(line)[1]); err == nil {
			p.total = n
		}
	case strings.HasPrefix(line, "building '"):
		// The previous derivation is done when the next one starts.
		if p.done < p.total {
			p.done++
		}
	default:
		return
	}
	// The one being built counts as done only when the next starts or
	// the command ends.
	p.report("realising", max(p.done-1, 0), p.total)
}
