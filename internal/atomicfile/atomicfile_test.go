package atomicfile

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Environment of the child process that holds a temporary file or a lock.
const (
	childTempEnv = "ATOMICFILE_CHILD_TEMP" // dir: create a temp file there and wait
	childLockEnv = "ATOMICFILE_CHILD_LOCK" // path: take the lock and wait
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childTempEnv); dir != "" {
		f, err := CreateTemp(dir, TempPrefix)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println(f.Name())
		time.Sleep(time.Hour) // killed by the test
	}
	if path := os.Getenv(childLockEnv); path != "" {
		if err := NewLock(path).Lock(context.Background()); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("locked")
		time.Sleep(time.Hour)
	}
	os.Exit(m.Run())
}

// child starts this test binary as a child that does what env asks and
// returns the first line it prints; the child is killed at cleanup.
func child(t *testing.T, env string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 4096)
	n, _ := out.Read(buf)
	line := strings.TrimSpace(string(buf[:n]))
	if line == "" || strings.HasPrefix(line, "error") {
		t.Fatalf("child: %q", line)
	}
	return cmd, line
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state.json")
	for _, data := range []string{"first", "second, longer than the first"} {
		if err := Write(name, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != data {
			t.Errorf("read %q, %v; want %q", got, err, data)
		}
	}
	fi, _ := os.Stat(name)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	// A directory that does not exist is an error, and writes nothing.
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("x")); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

func names(t *testing.T, dir string) string {
	t.Helper()
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	return strings.Join(left, " ")
}

// TestRemoveStale: only temporary files nobody holds are removed, whatever
// their age; a file held by another live process stays, and goes once that
// process is killed.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, TempPrefix+"dead") // written without a lock, as by a killed writer
	keep := filepath.Join(dir, "state.json")
	for _, f := range []string{dead, keep} {
		os.WriteFile(f, []byte("x"), 0o644)
	}
	mine, err := CreateTemp(dir, TempPrefix) // this process writes it
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	cmd, theirs := child(t, childTempEnv+"="+dir) // another process writes it

	if n, err := RemoveStale(dir, TempPrefix); n != 1 || err != nil {
		t.Errorf("RemoveStale = %d, %v; want 1 (the dead writer's)", n, err)
	}
	want := []string{filepath.Base(mine.Name()), filepath.Base(theirs), "state.json"}
	slices.Sort(want)
	if got := names(t, dir); got != strings.Join(want, " ") {
		t.Errorf("left %s, want %s", got, want)
	}
	// The writer of this process can still commit its file.
	if err := os.Rename(mine.Name(), filepath.Join(dir, "mine")); err != nil {
		t.Error(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if n, _ := RemoveStale(dir, TempPrefix); n != 1 {
		t.Errorf("after the writer was killed, RemoveStale removed %d, want 1", n)
	}
	if got := names(t, dir); got != "mine state.json" {
		t.Errorf("left %s", got)
	}
	if n, err := RemoveStale(filepath.Join(dir, "missing"), TempPrefix); n != 0 || err != nil {
		t.Errorf("missing dir: %d, %v", n, err)
	}
}

// TestLock: the lock excludes goroutines and other processes; a waiter
// can leave; the lock of a killed process is free.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l := NewLock(path)
	if err := l.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.TryLock(); ok {
		t.Error("TryLock succeeded while the lock was held in this process")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	if err := l.Lock(ctx); err == nil {
		t.Error("Lock succeeded while the lock was held")
	}
	cancel()
	l.Unlock()

	cmd, _ := child(t, childLockEnv+"="+path)
	if ok, err := l.TryLock(); ok || err != nil {
		t.Errorf("TryLock while another process holds the lock: %v, %v", ok, err)
	}
	got := make(chan error, 1)
	go func() { got <- l.Lock(t.Context()) }()
	select {
	case err := <-got:
		t.Fatalf("Lock returned %v while another process holds it", err)
	case <-time.After(100 * time.Millisecond):
	}
	cmd.Process.Kill()
	cmd.Wait()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the lock of a killed process was not released")
	}
	ran := false
	l.Unlock()
	if err := l.Do(t.Context(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do: %v, ran %v", err, ran)
	}
}
