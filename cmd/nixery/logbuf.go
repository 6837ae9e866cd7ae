package main

import (
	"io"
	"sync"
)

// LogBuffer moves log output off the request path: Write appends to a
// buffer and wakes a background writer, which hands everything buffered so
// far to w in one call. An idle server's lines therefore reach w at once
// (within a goroutine wake-up), while under load many request lines share
// one write system call instead of each request making its own ("group
// commit"). Lines keep their order and are never split. If w falls more
// than 1 MiB behind, Write waits for it.
//
// `nixery serve` logs to standard error through a LogBuffer.
type LogBuffer struct {
	w io.Writer

	writeMu sync.Mutex // held while writing to w, so batches keep their order
	spare   []byte     // a drained buffer to reuse; guarded by writeMu

	mu     sync.Mutex
	buf    []byte
	closed bool

	kick chan struct{} // capacity 1: "there is something to write"
	stop chan struct{}
	done chan struct{}
}

const logBufferMax = 1 << 20

// NewLogBuffer returns a LogBuffer writing to w. Close it to flush and stop
// its goroutine.
func NewLogBuffer(w io.Writer) *LogBuffer {
	b := &LogBuffer{
		w:    w,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go b.run()
	return b
}

func (b *LogBuffer) run() {
	defer close(b.done)
	for {
		select {
		case <-b.kick:
			b.flush()
		case <-b.stop:
			b.flush()
			return
		}
	}
}

// Write buffers p (slog hands over whole lines) and wakes the writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.writeMu.Lock()
		defer b.writeMu.Unlock()
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) > logBufferMax
	b.mu.Unlock()
	if full {
		if err := b.flush(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	select {
	case b.kick <- struct{}{}:
	default: // a wake-up is pending already and will write p too
	}
	return len(p), nil
}

// flush writes everything buffered.
func (b *LogBuffer) flush() error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	var err error
	if len(out) > 0 {
		_, err = b.w.Write(out)
	}
	b.spare = out
	return err
}

// Close writes what is buffered and stops the background writer. Later
// writes go straight to w.
func (b *LogBuffer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	return nil
}
