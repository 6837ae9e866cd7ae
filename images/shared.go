package images

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nixery-go/nixery/internal/atomicfile"
)

// RecordStore is an optional capability of a [Config.Store] that several
// servers share (an object store, see package layers/s3store): it keeps
// the index's records, the JSON of dir/<key>.json, where every server
// sees them. With it, the local IndexDir is a cache of the shared records:
//
//   - a record is written to the shared store before the local file, so a
//     record this server saved is always there;
//   - each refresh (at start, every collection, a request for an unknown
//     blob or for a pinned image this server does not know) copies the
//     shared records the directory lacks into it, and removes local
//     records that the shared store no longer has (another server's
//     collector dropped them), except at start, when they are written
//     back (a directory that predates the shared store);
//   - dropping an image deletes its shared record.
//
// So a server with an empty disk serves, by tag and by digest, every image
// another server built, without building it. What stays local: the layer
// cache (a cache of compressed members; a miss only costs compression)
// and the last-requested times (each server's collector ranks by what it
// served).
type RecordStore interface {
	// PutRecord stores the record of the image key.
	PutRecord(ctx context.Context, key string, data []byte) error
	// GetRecord returns it, or an error matching fs.ErrNotExist.
	GetRecord(ctx context.Context, key string) ([]byte, error)
	// ListRecords calls fn with the key of every record.
	ListRecords(ctx context.Context, fn func(key string) error) error
	// DeleteRecord removes it; a missing record is not an error.
	DeleteRecord(ctx context.Context, key string) error
}

// sharedRefreshEvery bounds how often requests for pinned images this
// server does not know make it read the shared records.
const sharedRefreshEvery = time.Second

// refreshShared loads the records of a shared store, at most every
// sharedRefreshEvery (a request that comes sooner waits for the refresh
// under way and then looks again), and reports whether it did or waited.
func (b *Builder) refreshShared(ctx context.Context) bool {
	b.sharedMu.Lock()
	defer b.sharedMu.Unlock()
	if time.Since(b.sharedAt) < sharedRefreshEvery {
		return true
	}
	b.sharedAt = time.Now()
	_, _, missing, err := b.index.refresh(ctx)
	if err != nil {
		b.log.Warn("cannot read the image index", "error", err)
		return false
	}
	b.repairAll(missing)
	return true
}

// sync makes the directory's records those of the shared store (see
// RecordStore). atStart writes local-only records to the shared store
// rather than removing them.
func (x *index) sync(ctx context.Context, atStart bool) error {
	if x.shared == nil || x.dir == "" {
		return nil
	}
	remote := map[string]bool{}
	if err := x.shared.ListRecords(ctx, func(key string) error { remote[key] = true; return nil }); err != nil {
		return err
	}
	ents, err := os.ReadDir(x.dir)
	if err != nil {
		return err
	}
	local := map[string]bool{}
	for _, e := range ents {
		key, ok := isRecordName(e.Name())
		if !ok {
			continue
		}
		local[key] = true
		if remote[key] {
			continue
		}
		file := filepath.Join(x.dir, e.Name())
		if atStart {
			if b, err := os.ReadFile(file); err == nil {
				if err := x.shared.PutRecord(ctx, key, b); err != nil {
					return err
				}
			}
			continue
		}
		os.Remove(file)
	}
	for key := range remote {
		if local[key] {
			continue
		}
		b, err := x.shared.GetRecord(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue // dropped meanwhile
		}
		if err != nil {
			return err
		}
		if err := atomicfile.Write(x.recordFile(key), b); err != nil {
			return err
		}
	}
	return nil
}
