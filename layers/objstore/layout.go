package objstore

import (
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
)

// Layout names the objects of a backend's bucket, under an optional
// prefix:
//
//	blobs/sha256/<hex>           committed blobs
//	quarantine/<hex>.<unixnano>  damaged blobs set aside, for QuarantineAge
//	index/<key>.json             image records (images.RecordStore)
//	state/<name>                 small shared objects (images.StateStore)
//
// Names given to it are checked before they become keys, and names listed
// from the bucket are parsed back with the same rules, so that a key never
// leaves its part of the bucket and a stray object is never taken for one.
type Layout struct {
	Pkg    string // the backend, for errors
	Prefix string
}

// QuarantineAge is how long a quarantined blob is kept.
const QuarantineAge = 7 * 24 * time.Hour

// Blobs is the key prefix of the committed blobs.
func (l Layout) Blobs() string { return l.Prefix + "blobs/sha256/" }

// Blob is the key of the blob h.
func (l Layout) Blob(h v1.Hash) string { return l.Blobs() + h.Hex }

// BlobOf returns the digest of a key listed under Blobs, and whether it is
// one.
func (l Layout) BlobOf(key string) (v1.Hash, bool) {
	h := v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(key, l.Blobs())}
	return h, layers.ValidateDigest(h) == nil
}

// Quarantined is the key prefix of the quarantined blobs.
func (l Layout) Quarantined() string { return l.Prefix + "quarantine/" }

// Quarantine is a new key for setting the blob h aside.
func (l Layout) Quarantine(h v1.Hash) string {
	return fmt.Sprintf("%s%s.%d", l.Quarantined(), h.Hex, time.Now().UnixNano())
}

// Records is the key prefix of the image records.
func (l Layout) Records() string { return l.Prefix + "index/" }

// Record is the key of the record of the image key (a sha256 hex).
func (l Layout) Record(key string) (string, error) {
	if layers.ValidateDigest(v1.Hash{Algorithm: "sha256", Hex: key}) != nil {
		return "", fmt.Errorf("%s: bad record key %q", l.Pkg, key)
	}
	return l.Records() + key + ".json", nil
}

// RecordOf returns the image key of a key listed under Records, and
// whether it is one.
func (l Layout) RecordOf(key string) (string, bool) {
	k, ok := strings.CutSuffix(strings.TrimPrefix(key, l.Records()), ".json")
	return k, ok && layers.ValidateDigest(v1.Hash{Algorithm: "sha256", Hex: k}) == nil
}

// States is the key prefix of the state objects.
func (l Layout) States() string { return l.Prefix + "state/" }

// State is the key of the state object name ([CheckStateName]).
func (l Layout) State(name string) (string, error) {
	if err := CheckStateName(l.Pkg, name); err != nil {
		return "", err
	}
	return l.States() + name, nil
}

// StateOf returns the name of a key listed under States, and whether it is
// one.
func (l Layout) StateOf(key string) (string, bool) {
	name := strings.TrimPrefix(key, l.States())
	return name, CheckStateName(l.Pkg, name) == nil
}
