package testutil

import (
	"strings"
	"sync"
	"testing"
)

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("line\n"))
				_ = b.String() // read while others write: -race checks it
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "line\n"); n != 800 || b.Len() != 800*5 {
		t.Errorf("%d lines, %d bytes; want 800 lines of 5 bytes", n, b.Len())
	}
}
