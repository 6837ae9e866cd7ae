package layers

import (
	"context"
	"errors"
	"io"
)

// bufPool is a bounded set of chunk buffers. Bounding it bounds the memory of
// a build: the producer blocks once every buffer is in flight.
type bufPool struct {
	size int
	max  int
	made int // only touched by get's single caller, the producer
	free chan []byte
}

func newBufPool(size, max int) *bufPool {
	return &bufPool{size: size, max: max, free: make(chan []byte, max)}
}

// get returns an empty buffer with capacity p.size. Only one goroutine may
// call get.
func (p *bufPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b[:0], nil
	default:
	}
	if p.made < p.max {
		p.made++
		return make([]byte, 0, p.size), nil
	}
	select {
	case b := <-p.free:
		return b[:0], nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// put returns b to the pool. It never blocks.
func (p *bufPool) put(b []byte) {
	if b != nil {
		p.free <- b
	}
}

// chunker cuts the tar bytes of one store path into chunks of exactly
// cap(buf) bytes (the last one shorter) and hands each to emit. It implements
// segmentWriter.
type chunker struct {
	ctx  context.Context
	pool *bufPool
	buf  []byte
	n    int64 // bytes written so far
	emit func([]byte) error
}

func (c *chunker) ensure() error {
	if c.buf != nil && len(c.buf) < cap(c.buf) {
		return nil
	}
	if c.buf != nil {
		b := c.buf
		c.buf = nil
		if err := c.emit(b); err != nil {
			return err
		}
	}
	b, err := c.pool.get(c.ctx)
	if err != nil {
		return err
	}
	c.buf = b
	return nil
}

func (c *chunker) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if err := c.ensure(); err != nil {
			return written, err
		}
		k := copy(c.buf[len(c.buf):cap(c.buf)], p)
		c.buf = c.buf[:len(c.buf)+k]
		p = p[k:]
		written += k
		c.n += int64(k)
	}
	return written, nil
}

// readFull reads exactly n bytes from r straight into the chunk buffers.
func (c *chunker) readFull(r io.Reader, n int64) error {
	for n > 0 {
		if err := c.ensure(); err != nil {
			return err
		}
		room := int64(cap(c.buf) - len(c.buf))
		k, err := r.Read(c.buf[len(c.buf) : int64(len(c.buf))+min(room, n)])
		c.buf = c.buf[:len(c.buf)+k]
		c.n += int64(k)
		n -= int64(k)
		if n > 0 && errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF // the file shrank while being read
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// flush emits the last, possibly short, chunk.
func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		c.pool.put(c.buf)
		c.buf = nil
		return nil
	}
	b := c.buf
	c.buf = nil
	return c.emit(b)
}
