package main

import (
	"errors"
	"net"
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
	ln := limitListen(inner, 2)
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
	if limitListen(inner, 0) != inner {
		t.Error("a cap of 0 wrapped the listener")
	}
}
