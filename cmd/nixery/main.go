// Command nixery serves container images built on demand from Nix.
//
//	nixery serve            start the registry (see `nixery serve -h`)
//	nixery build -o PATH NAME  build an image into a docker-archive or an OCI layout
//	nixery push NAME REF    build an image and push it to a registry
//	nixery closure NAME...  realise packages and print their runtime closure
//	nixery help [COMMAND]   this list, or a command's flags
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// A command is one subcommand. Each lives in its own file and registers
// itself in init.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: nixery COMMAND [ARGS]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "help", "this list; 'nixery help COMMAND' (or 'nixery COMMAND -h'): the command's flags")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the exit status: 0, 1 when the command failed, 2 for a usage error.
// Asked for help (help, -h, --help, or a command's -h), it prints it and
// returns 0.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			if _, ok := commands[args[1]]; !ok {
				fmt.Fprintf(stderr, "nixery: no command %q to help with\n", args[1])
				usage(stderr)
				return 2
			}
			return run(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "nixery: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err := cmd.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the flag set printed the command's usage
		}
		fmt.Fprintln(stderr, "nixery:", err)
		return 1
	}
	return 0
}
