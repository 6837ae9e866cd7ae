// Package atomicfile writes state files so that a reader sees either the old
// contents or the new, never a part: the data goes to a temporary file in the
// same directory, which is fsync'd and renamed over the target, and the
// directory is fsync'd so that the rename survives a crash. Temporary files
// are named with [TempPrefix]; [RemoveStale] deletes the ones a killed
// process left behind.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TempPrefix starts the name of every temporary file Write creates.
const TempPrefix = ".tmp-"

// Write replaces the file name with data, atomically and durably. The
// directory must exist. The file gets mode 0644.
func Write(name string, data []byte) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("atomicfile: %w", err)
	}
	SyncDir(dir)
	return nil
}

// SyncDir fsyncs a directory so that a rename or removal in it is durable.
// Errors are ignored: the change itself has happened, and some filesystems
// refuse to sync directories.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// RemoveStale removes the files in dir whose names start with prefix and
// that were last modified more than age ago, and returns how many it
// removed. An age of zero removes them all: right for temporary files at
// start-up, when no writer of this process can be using them, and safe
// with other processes only if none shares the directory. A missing dir
// is not an error.
func RemoveStale(dir, prefix string, age time.Duration) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < age {
			continue
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
