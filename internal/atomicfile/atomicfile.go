// Package atomicfile writes state files so that a reader sees either the old
// contents or the new, never a part, and keeps the files of several
// processes that share a directory apart:
//
//   - [Write] puts the data in a temporary file in the same directory, which
//     is fsync'd and renamed over the target, and fsyncs the directory so
//     that the rename survives a crash;
//   - [CreateTemp] makes every temporary file (Write's, and the blobs and
//     cache entries that other packages write the same way) locked with
//     flock for as long as its writer holds it open;
//   - [RemoveStale] removes the temporary files that a killed process left
//     behind: only unlocked ones, so that it is safe at any time, also
//     while another process sharing the directory is writing;
//   - [Lock] is a lock held across the processes that use one lock file.
//
// Locks are flock(2) locks: advisory, released by the kernel when their
// holder dies, and meaningful only among processes that use this package
// (every process sharing a storage directory must run a nixery that does).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPrefix starts the name of every temporary file Write creates.
const TempPrefix = ".tmp-"

// Write replaces the file name with data, atomically and durably. The
// directory must exist. The file gets mode 0644.
func Write(name string, data []byte) error {
	dir := filepath.Dir(name)
	f, err := CreateTemp(dir, TempPrefix)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(f.Name(), name) // before Close: the lock keeps RemoveStale away
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("atomicfile: %w", err)
	}
	SyncDir(dir)
	return nil
}

// CreateTemp creates a new file in dir named prefix followed by a random
// string, opened for reading and writing, and holds an exclusive flock on
// it until the file is closed, so that [RemoveStale] leaves it alone. A
// writer that renames the file into place must rename it before closing it.
func CreateTemp(dir, prefix string) (*os.File, error) {
	for attempt := 1; ; attempt++ {
		f, err := os.CreateTemp(dir, prefix+"*")
		if err != nil {
			return nil, err
		}
		err = flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil && samePath(f) {
			return f, nil
		}
		// A RemoveStale between the creation and the lock took the file
		// (it holds the lock, or has removed the file): make another.
		f.Close()
		if attempt == 3 {
			if err == nil {
				err = errors.New("removed while being created")
			}
			return nil, fmt.Errorf("temporary file in %s: %w", dir, err)
		}
	}
}

// samePath reports whether f's name still refers to f.
func samePath(f *os.File) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(f.Name())
	return err == nil && os.SameFile(a, b)
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
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
// that no process holds locked (see [CreateTemp]): temporary files whose
// writer died. It returns how many it removed. It is safe to call at any
// time, also while other processes write to dir. A missing dir is not an
// error.
func RemoveStale(dir, prefix string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		if removeUnlocked(filepath.Join(dir, e.Name())) {
			n++
		}
	}
	return n, nil
}

// removeUnlocked removes the file name if nobody holds its lock.
func removeUnlocked(name string) bool {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false // renamed into place or removed meanwhile
	}
	defer f.Close()
	if flock(f, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false // its writer is alive
	}
	// Holding the lock, check that the name is still this file (a writer
	// renames before it unlocks, so it is not one being committed).
	return samePath(f) && os.Remove(name) == nil
}
