package testutil

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SeaweedFS is a SeaweedFS cluster started by [StartSeaweedFS]: a master,
// two volume servers that hold a copy of every volume each, a filer and
// its S3 gateway, all on 127.0.0.1.
type SeaweedFS struct {
	// Endpoint is the S3 gateway's URL, http://127.0.0.1:port.
	Endpoint string
	// Bucket is a bucket that exists; AccessKey and SecretKey are an
	// identity allowed everything; Region is us-east-1.
	Bucket, AccessKey, SecretKey, Region string
	// Dir holds the cluster's data and logs.
	Dir string

	script string
}

// StartSeaweedFS starts a SeaweedFS cluster with .ci/seaweedfs (which
// builds weed the first time) and stops it when t ends. It fails t, never
// skips, when the cluster cannot start.
func StartSeaweedFS(t testing.TB) *SeaweedFS {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a SeaweedFS cluster; skipped with -short")
	}
	mod, err := ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	w := &SeaweedFS{script: filepath.Join(mod, ".ci", "seaweedfs"), Dir: filepath.Join(t.TempDir(), "seaweedfs")}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.script, "start", w.Dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Cleanup(func() { exec.Command(w.script, "stop", w.Dir).Run() })
	if err != nil {
		t.Fatalf("testutil: .ci/seaweedfs start: %v\n%s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			env[k] = v
		}
	}
	w.Endpoint, w.Bucket = env["S3_ENDPOINT"], env["S3_BUCKET"]
	w.AccessKey, w.SecretKey, w.Region = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_REGION"]
	if w.Endpoint == "" || w.Bucket == "" {
		t.Fatalf("testutil: .ci/seaweedfs start printed no endpoint:\n%s\n%s", out, stderr.String())
	}
	return w
}

// Env returns the environment that points nixery (or any AWS client) at
// the cluster: NIXERY_STORAGE_BACKEND=s3, S3_ENDPOINT, S3_BUCKET, the
// credentials and region.
func (w *SeaweedFS) Env() []string {
	return []string{
		"NIXERY_STORAGE_BACKEND=s3",
		"S3_ENDPOINT=" + w.Endpoint,
		"S3_BUCKET=" + w.Bucket,
		"AWS_ACCESS_KEY_ID=" + w.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + w.SecretKey,
		"AWS_REGION=" + w.Region,
		// Keep the SDK from reading the machine's profiles.
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets [SeaweedFS.Env] in the test's own environment (t.Setenv), for
// in-process clients that read the AWS chain.
func (w *SeaweedFS) SetEnv(t testing.TB) {
	for _, kv := range w.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// KillVolume SIGKILLs volume server n (1 or 2).
func (w *SeaweedFS) KillVolume(n int) error {
	if out, err := exec.Command(w.script, "kill-volume", w.Dir, fmt.Sprint(n)).CombinedOutput(); err != nil {
		return fmt.Errorf("testutil: .ci/seaweedfs kill-volume: %v\n%s", err, out)
	}
	return nil
}

// CPU returns the CPU time (user and system) the cluster's processes have
// used so far, from /proc: what the object store costs, to set beside a
// client's own.
func (w *SeaweedFS) CPU() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(w.Dir, "pids"))
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		stat, err := os.ReadFile("/proc/" + f[1] + "/stat")
		if err != nil {
			continue // a volume server stopped by the test
		}
		// The fields after the command, which is in parentheses.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			return 0, fmt.Errorf("testutil: /proc/%s/stat: too few fields", f[1])
		}
		for _, v := range fields[11:13] { // utime, stime
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("testutil: /proc/%s/stat: %v", f[1], err)
			}
			ticks += n
		}
	}
	// USER_HZ is 100 on every Linux this runs on.
	return time.Duration(ticks) * (time.Second / 100), nil
}
