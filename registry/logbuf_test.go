package registry

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func TestLogBuffer(t *testing.T) {
	var w countingWriter
	b := NewLogBuffer(&w, time.Hour)
	line := strings.Repeat("x", 99) + "\n"
	for range 1000 { // 100 kB: three or four flushes, no line split
		b.Write([]byte(line))
	}
	b.Close()
	if w.buf.String() != strings.Repeat(line, 1000) {
		t.Fatal("lines lost or reordered")
	}
	if w.writes < 3 || w.writes > 5 {
		t.Errorf("%d writes for 100 kB", w.writes)
	}
	// The ticker flushes.
	var w2 countingWriter
	b2 := NewLogBuffer(&w2, 10*time.Millisecond)
	defer b2.Close()
	b2.Write([]byte("hello\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		w2.mu.Lock()
		s := w2.buf.String()
		w2.mu.Unlock()
		if s == "hello\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not flushed by the ticker")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
