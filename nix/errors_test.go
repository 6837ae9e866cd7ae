package nix

import (
	"errors"
	"fmt"
	"testing"
)

func TestBuildErrorMessage(t *testing.T) {
	for _, tc := range []struct{ log, want string }{
		// Nix 2.8
		{"error: attribute 'x' missing\n\n       at «string»:3:5:\n\n            2|\n(use '--show-trace' to show detailed location information)\n",
			"nix: evaluate failed: exit status 1: error: attribute 'x' missing"},
		// Nix 2.2x: context first, the innermost error last
		{"error:\n       … while calling the 'throw' builtin\n         at /x/default.nix:3:3:\n\n       error: the Debian package foo is not installed\n",
			"nix: evaluate failed: exit status 1: error: the Debian package foo is not installed"},
		{"building '/nix/store/x.drv'...\nsomething odd\n", "nix: evaluate failed: exit status 1: something odd"},
		{"", "nix: evaluate failed: exit status 1"},
	} {
		err := &BuildError{Op: "evaluate", Err: errors.New("exit status 1"), Log: tc.log}
		if got := err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	inner := errors.New("exit status 1")
	if !errors.Is(fmt.Errorf("wrapped: %w", &BuildError{Op: "build", Err: inner}), inner) {
		t.Error("BuildError does not unwrap")
	}
}
