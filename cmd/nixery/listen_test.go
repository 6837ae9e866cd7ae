package main

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLimitListen: with a cap of two, a third connection is accepted only
// once one of the first two is closed, and Close ends a waiting Accept.
func TestLimitListen(t *testing.T) {
	inner, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	ln := serveListen(inner, 2)
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(100 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close gives nothing back
	third := <-accepted
	select {
	case <-accepted:
		t.Fatal("one Close let two connections in")
	case <-time.After(100 * time.Millisecond):
	}
	second.Close()
	third.Close()
	ln.Close()
	if _, ok := <-accepted; ok {
		t.Error("Accept returned a connection after Close")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

// TestServeConn: connections keep ReadFrom (sendfile), and one whose write
// ran past its deadline is reset when closed, while one closed normally
// ends with EOF; without a cap, connections are not limited.
func TestServeConn(t *testing.T) {
	inner, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	ln := serveListen(inner, 0)
	defer ln.Close()
	for _, stall := range []bool{false, true} {
		client, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		client.(*net.TCPConn).SetReadBuffer(4 << 10)
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.(io.ReaderFrom); !ok {
			t.Fatal("a connection without ReadFrom: no sendfile")
		}
		if stall {
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := c.Write(make([]byte, 64<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a write to a client that does not read: %v", err)
			}
		} else if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, client)
		if reset := err != nil && strings.Contains(err.Error(), "connection reset"); reset != stall {
			t.Errorf("stalled %v: the client's read ended with %v", stall, err)
		}
	}
}
