package main

import (
	"bytes"
	"fmt"
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

func (c *countingWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func TestLogBuffer(t *testing.T) {
	var w countingWriter
	b := NewLogBuffer(&w)
	// Many writers: every line arrives whole, each writer's in order.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				fmt.Fprintf(b, "g%d line %d %s\n", g, i, strings.Repeat("x", 80))
			}
		}()
	}
	wg.Wait()
	b.Close()
	next := map[string]int{}
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if len(lines) != 16000 {
		t.Fatalf("%d lines, want 16000", len(lines))
	}
	for _, l := range lines {
		var g string
		var i int
		if _, err := fmt.Sscanf(l, "%s line %d", &g, &i); err != nil || next[g] != i || len(l) != len(g)+len(" line ")+len(fmt.Sprint(i))+81 {
			t.Fatalf("line %q out of order or torn (want %s line %d)", l, g, next[g])
		}
		next[g]++
	}
	t.Logf("16000 lines in %d writes", w.writes)

	// An idle buffer writes a line at once, without waiting for more.
	var w2 countingWriter
	b2 := NewLogBuffer(&w2)
	defer b2.Close()
	b2.Write([]byte("hello\n"))
	deadline := time.Now().Add(5 * time.Second)
	for w2.String() != "hello\n" {
		if time.Now().After(deadline) {
			t.Fatal("an idle line was not written")
		}
		time.Sleep(time.Millisecond)
	}
	// After Close, writes go straight through.
	b2.Close()
	b2.Write([]byte("late\n"))
	if w2.String() != "hello\nlate\n" {
		t.Errorf("after Close: %q", w2.String())
	}
}
