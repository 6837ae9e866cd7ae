package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, TempPrefix+"old")
	fresh := filepath.Join(dir, TempPrefix+"fresh")
	keep := filepath.Join(dir, "state.json")
	for _, f := range []string{old, fresh, keep} {
		os.WriteFile(f, []byte("x"), 0o644)
	}
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	if n, err := RemoveStale(dir, TempPrefix, time.Hour); n != 1 || err != nil {
		t.Errorf("RemoveStale = %d, %v; want 1", n, err)
	}
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != TempPrefix+"fresh state.json" {
		t.Errorf("left %v", left)
	}
	if n, _ := RemoveStale(dir, TempPrefix, 0); n != 1 {
		t.Errorf("age 0 removed %d, want the fresh one", n)
	}
	if n, err := RemoveStale(filepath.Join(dir, "missing"), TempPrefix, 0); n != 0 || err != nil {
		t.Errorf("missing dir: %d, %v", n, err)
	}
}
