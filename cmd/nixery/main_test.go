package main

import (
	"strings"
	"testing"
)

// TestRunHelp checks what the command line answers to help, to a
// command's -h and to unknown commands: help is a success, on standard
// output, and lists every command; a usage error is exit status 2, on
// standard error.
func TestRunHelp(t *testing.T) {
	for _, c := range []struct {
		args       []string
		code       int
		err        string // a substring of stderr
		emptyOut   bool
		listsUsage bool
	}{
		{args: []string{"help"}, code: 0, listsUsage: true},
		{args: []string{"--help"}, code: 0, listsUsage: true},
		{args: []string{"-h"}, code: 0, listsUsage: true},
		{args: nil, code: 2, err: "usage: nixery COMMAND", emptyOut: true},
		{args: []string{"bogus"}, code: 2, err: `unknown command "bogus"`, emptyOut: true},
		{args: []string{"help", "bogus"}, code: 2, err: `no command "bogus" to help with`, emptyOut: true},
		{args: []string{"closure", "-h"}, code: 0, emptyOut: true},
		{args: []string{"help", "build"}, code: 0, emptyOut: true},
		{args: []string{"closure", "-no-such-flag"}, code: 1, err: "flag provided but not defined", emptyOut: true},
	} {
		var stdout, stderr strings.Builder
		code := run(t.Context(), c.args, &stdout, &stderr)
		if code != c.code {
			t.Errorf("%q: exit status %d, want %d (stderr %q)", c.args, code, c.code, stderr.String())
		}
		if c.listsUsage {
			for _, cmd := range []string{"serve", "build", "push", "closure", "help"} {
				if !strings.Contains(stdout.String(), "\n  "+cmd+" ") {
					t.Errorf("%q: stdout does not list %s:\n%s", c.args, cmd, stdout.String())
				}
			}
			if stderr.Len() != 0 {
				t.Errorf("%q: stderr %q, want nothing", c.args, stderr.String())
			}
		}
		if c.emptyOut && stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, want nothing", c.args, stdout.String())
		}
		if !strings.Contains(stderr.String(), c.err) {
			t.Errorf("%q: stderr %q, want it to say %q", c.args, stderr.String(), c.err)
		}
	}
}
