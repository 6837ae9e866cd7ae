package pull

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// engine is a Docker engine the pulls go to: one the caller gave, or a
// private dockerd started (and later stopped) here.
type engine struct {
	host string // DOCKER_HOST value
	cmd  *exec.Cmd
	done chan error
	dirs []string // removed at stop
	log  *slog.Logger
}

// Dockerd is the Docker daemon binary started for a private engine.
var Dockerd = "/usr/sbin/dockerd"

// startEngine starts a private dockerd with its own data root (below
// workDir, so it starts empty), exec root and socket (in a short directory
// under /tmp: unix socket paths are limited to 108 bytes), no iptables, no
// masquerading and no bridge, and waits until it answers.
func startEngine(ctx context.Context, workDir string, log *slog.Logger) (*engine, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, fmt.Errorf("pull: docker client not found in PATH (run .ci/setup-clients): %w", err)
	}
	if _, err := os.Stat(Dockerd); err != nil {
		return nil, fmt.Errorf("pull: %s not found (Debian: apt-get install docker.io): %w", Dockerd, err)
	}
	run, err := os.MkdirTemp("/tmp", "nxpd-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(workDir, "docker-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	config := filepath.Join(run, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(workDir, "dockerd.log"))
	if err != nil {
		return nil, err
	}
	e := &engine{host: "unix://" + filepath.Join(run, "docker.sock"), dirs: []string{run, data}, log: log, done: make(chan error, 1)}
	e.cmd = exec.Command(Dockerd,
		"--config-file", config,
		"--data-root", data,
		"--exec-root", filepath.Join(run, "exec"),
		"--pidfile", filepath.Join(run, "dockerd.pid"),
		"-H", e.host,
		"--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
		"--userland-proxy=false")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	// The engine dies with this process rather than outlive it.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(run)
		return nil, fmt.Errorf("pull: starting dockerd: %w", err)
	}
	go func() { e.done <- e.cmd.Wait(); logf.Close() }()
	log.Info("dockerd starting", "host", e.host, "data_root", data, "pid", e.cmd.Process.Pid)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-e.done:
			e.done <- err
			e.stop()
			return nil, fmt.Errorf("pull: dockerd exited at start: %v (see %s)", err, logf.Name())
		default:
		}
		if _, err := e.docker(ctx, "version", "--format", "{{.Server.Version}}"); err == nil {
			return e, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.stop()
			return nil, fmt.Errorf("pull: dockerd did not answer within 60 s (see %s)", logf.Name())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// stop stops a private engine (SIGTERM, then SIGKILL after 30 s) and
// removes its directories; for the caller's engine it does nothing.
func (e *engine) stop() {
	if e.cmd == nil {
		return
	}
	select {
	case <-e.done:
	default:
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(30 * time.Second):
			// Kill the whole group: dockerd and the containerd it started.
			syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			<-e.done
		}
	}
	for _, d := range e.dirs {
		if err := os.RemoveAll(d); err != nil {
			e.log.Warn("removing engine directory", "dir", d, "err", err)
		}
	}
	e.log.Info("dockerd stopped", "host", e.host)
}

// docker runs the docker client against the engine.
func (e *engine) docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("pull: docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
