package main

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// serveListener wraps the server's listener:
//
//   - it accepts at most max connections at once (max > 0): Accept waits
//     for one to close, so that further clients wait in the kernel's listen
//     backlog rather than take memory and goroutines of the server;
//   - a connection whose write ran past its deadline (the registry's write
//     timeout: the client stopped reading) is reset when the server closes
//     it, so that the kernel drops the bytes queued for it at once instead
//     of keeping them, orphaned, for a client that does not read.
//
// Connections keep the TCP connection's ReadFrom, so that blobs are still
// sent with sendfile.
type serveListener struct {
	net.Listener
	sem       chan struct{} // nil: no cap
	done      chan struct{}
	closeOnce sync.Once
}

// serveListen wraps ln; max <= 0 sets no cap.
func serveListen(ln net.Listener, max int) net.Listener {
	l := &serveListener{Listener: ln, done: make(chan struct{})}
	if max > 0 {
		l.sem = make(chan struct{}, max)
	}
	return l
}

func (l *serveListener) Accept() (net.Conn, error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return &serveConn{Conn: c, release: l.release}, nil
}

func (l *serveListener) release() {
	if l.sem != nil {
		<-l.sem
	}
}

func (l *serveListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// serveConn is a connection of a serveListener.
type serveConn struct {
	net.Conn
	once     sync.Once
	release  func()
	timedOut atomic.Bool // a write ran past its deadline
}

// note remembers a write that ran past its deadline. A write that sent
// some bytes before (a slow client, whose response goes on under a new
// deadline) counts only for Write, after which net/http gives up on the
// connection.
func (c *serveConn) note(err error) {
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
}

func (c *serveConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.note(err)
	return n, err
}

// ReadFrom is the TCP connection's, with sendfile.
func (c *serveConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{c}, r)
	}
	n, err := rf.ReadFrom(r)
	if n == 0 {
		c.note(err)
	}
	return n, err
}

// CloseWrite lets net/http close the sending side first, as it does for a
// TCP connection.
func (c *serveConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *serveConn) Close() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok && c.timedOut.Load() {
		tc.SetLinger(0) // reset: drop what the client never read
	}
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
