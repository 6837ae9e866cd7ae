package layers

import (
	"os"
	"syscall"
)

// syncer starts writeback of a file being written every syncEvery bytes
// (sync_file_range(2) with SYNC_FILE_RANGE_WRITE, which does not wait), so
// that the fsync at commit does not have to write the whole blob at once and
// dirty pages do not pile up.
type syncer struct {
	synced int64
}

const syncEvery = 8 << 20

func (s *syncer) wrote(f *os.File, n int64) {
	if n-s.synced < syncEvery {
		return
	}
	const syncFileRangeWrite = 2 // SYNC_FILE_RANGE_WRITE
	syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(s.synced), uintptr(n-s.synced), syncFileRangeWrite, 0, 0)
	s.synced = n
}
