package layers

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/internal/atomicfile"
)

// A member cache entry is one file holding the gzip members of one store
// path, behind a fixed header:
//
//	offset  size  field
//	0       8     magic "NXMEMB02"
//	8       8     tar bytes of the path's segment, big endian
//	16      8     compressed bytes that follow the header, big endian
//	24      4     CRC-32C (Castagnoli) of those compressed bytes, big endian
//	28      4     zero
//	32            the members
//
// The header is written last (the file is created in the cache's tmp
// directory and renamed into place once complete), and every use checks the
// file's length against the header and the members against the checksum
// while streaming them, so a truncated or corrupt entry is detected, removed
// and rebuilt rather than served.
//
// The checksum is CRC-32C rather than sha256 because a warm layer is bound
// by hashing: its blob and its DiffID need two sha256 passes already, and a
// third over the members would add a large share of its CPU time, while
// CRC-32C runs at memory speed (SSE 4.2). It detects what befalls a local cache,
// truncation and corruption; it is no defence against someone who can
// write to the cache directory, but neither would sha256 be, as the recorded
// sum is in the same file.
const (
	memberMagic     = "NXMEMB02"
	memberHeaderLen = 32
)

// castagnoli is the CRC-32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// memberHeader is the header of a member cache entry.
type memberHeader struct {
	tarSize, compSize int64
	crc               uint32
}

func (h *memberHeader) marshal() []byte {
	b := make([]byte, memberHeaderLen)
	copy(b, memberMagic)
	binary.BigEndian.PutUint64(b[8:], uint64(h.tarSize))
	binary.BigEndian.PutUint64(b[16:], uint64(h.compSize))
	binary.BigEndian.PutUint32(b[24:], h.crc)
	return b
}

// errCorrupt marks a cache entry that failed a check.
var errCorrupt = errors.New("layers: corrupt cache entry")

// openMember opens a member cache entry and checks its header and length.
// It returns an error wrapping os.ErrNotExist if there is no entry, and one
// wrapping errCorrupt if the entry is damaged.
func openMember(name string) (*os.File, memberHeader, error) {
	var h memberHeader
	f, err := os.Open(name)
	if err != nil {
		return nil, h, err
	}
	var b [memberHeaderLen]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		f.Close()
		return nil, h, fmt.Errorf("%w: %s: short header", errCorrupt, name)
	}
	h.tarSize = int64(binary.BigEndian.Uint64(b[8:]))
	h.compSize = int64(binary.BigEndian.Uint64(b[16:]))
	h.crc = binary.BigEndian.Uint32(b[24:])
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, h, err
	}
	if string(b[:8]) != memberMagic || binary.BigEndian.Uint32(b[28:]) != 0 || h.tarSize <= 0 || h.tarSize%tarBlock != 0 || h.compSize <= 0 ||
		fi.Size() != memberHeaderLen+h.compSize {
		f.Close()
		return nil, h, fmt.Errorf("%w: %s: bad header or length", errCorrupt, name)
	}
	return f, h, nil
}

// memberTemp is a member cache entry being written.
type memberTemp struct {
	f       *os.File
	h       hash.Hash32
	n       int64
	tarSize int64
}

func newMemberTemp(dir string) (*memberTemp, error) {
	f, err := atomicfile.CreateTemp(dir, "member-")
	if err != nil {
		return nil, fmt.Errorf("layers: member cache: %w", err)
	}
	if _, err := f.Write(make([]byte, memberHeaderLen)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("layers: member cache: %w", err)
	}
	return &memberTemp{f: f, h: crc32.New(castagnoli)}, nil
}

func (m *memberTemp) Write(p []byte) (int, error) {
	n, err := m.f.Write(p)
	m.h.Write(p[:n])
	m.n += int64(n)
	return n, err
}

// commit writes the header and renames the entry into place as name
// (before closing it, so that its lock keeps RemoveStale away). The entry
// is not fsync'd: it is checked on every use (length and CRC-32C), and
// after a power loss a damaged entry is removed and rebuilt, so syncing
// thousands of entries would buy nothing.
func (m *memberTemp) commit(name string, tarSize int64) (memberHeader, error) {
	h := memberHeader{tarSize: tarSize, compSize: m.n}
	h.crc = m.h.Sum32()
	if _, err := m.f.WriteAt(h.marshal(), 0); err != nil {
		m.discard()
		return h, fmt.Errorf("layers: member cache: %w", err)
	}
	if err := os.Rename(m.f.Name(), name); err != nil {
		m.discard()
		return h, fmt.Errorf("layers: member cache: %w", err)
	}
	if err := m.f.Close(); err != nil {
		os.Remove(name)
		return h, fmt.Errorf("layers: member cache: %w", err)
	}
	return h, nil
}

func (m *memberTemp) discard() {
	m.f.Close()
	os.Remove(m.f.Name())
}

// layerEntry is a layer cache entry, stored as JSON in
// cacheDir/layers/<key>.json where key is the hex sha256 of the format ID and
// the sorted store paths (see [layerKey]). It repeats the format and paths
// so that an entry can be checked against the request it answers.
type layerEntry struct {
	Format string   `json:"format"`
	Paths  []string `json:"paths"`
	Digest string   `json:"digest"`
	DiffID string   `json:"diffID"`
	Size   int64    `json:"size"`
}

// layerKey is the layer cache key of a sorted, deduplicated set of store
// paths.
func layerKey(format string, paths []string) string {
	h := sha256.New()
	io.WriteString(h, format)
	for _, p := range paths {
		io.WriteString(h, "\n")
		io.WriteString(h, p)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// readLayerEntry reads and checks a layer cache entry.
func readLayerEntry(name, format string, paths []string) (Descriptor, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return Descriptor{}, err
	}
	var e layerEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %s: %v", errCorrupt, name, err)
	}
	if e.Format != format || strings.Join(e.Paths, "\n") != strings.Join(paths, "\n") || e.Size <= 0 {
		return Descriptor{}, fmt.Errorf("%w: %s: does not match the request", errCorrupt, name)
	}
	d := Descriptor{Size: e.Size}
	if d.Digest, err = ParseDigest(e.Digest); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %s: %v", errCorrupt, name, err)
	}
	if d.DiffID, err = ParseDigest(e.DiffID); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %s: %v", errCorrupt, name, err)
	}
	return d, nil
}

// writeLayerEntry stores a layer cache entry atomically and durably.
func writeLayerEntry(name, format string, paths []string, d Descriptor) error {
	b, err := json.Marshal(layerEntry{Format: format, Paths: paths, Digest: d.Digest.String(), DiffID: d.DiffID.String(), Size: d.Size})
	if err != nil {
		return err
	}
	return atomicfile.Write(name, b)
}

// hashOf returns the sha256 digest in h.
func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// memberDirName is the directory of the member cache for a format.
func memberDirName(cacheDir, format string) string {
	return filepath.Join(cacheDir, "members", fmt.Sprintf("%x", sha256.Sum256([]byte(format)))[:16])
}
