package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/nixery-go/nixery/nix"
)

func init() {
	register("closure", "realise packages and print their runtime closure as JSON", func(ctx context.Context, args []string) error {
		return closureCmd(ctx, args, os.Getenv, os.Stdout, os.Stderr)
	})
}

const closureUsage = `usage: nixery closure [flags] NAME...

Realises the named packages with Nix and prints their runtime closure as a
JSON array sorted by store path: one object per store path with its
narSize, narHash and references. The package set is chosen as for
'nixery serve' (-pkgs-path, -channel or -pkgs-repo, or their variables), or
the bundled set when none is set.

`

// closureCmd implements `nixery closure`.
func closureCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("closure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, closureUsage)
		fs.PrintDefaults()
	}
	system := fs.String("system", nix.DefaultSystem, "`system` to build for: "+strings.Join(nix.Systems, " or "))
	tag := fs.String("tag", "latest", "image `tag`: selects the ref or commit of NIXERY_PKGS_REPO")
	verbose := fs.Bool("v", false, "log each Nix command to stderr")
	var srcConfig nix.SourceConfig
	var timeoutFlag string
	sourceFlags(fs, envLookup(getenv), &srcConfig, &timeoutFlag)
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := fs.Args()
	if len(names) == 0 {
		fs.Usage()
		return errors.New("closure: no package names given")
	}
	timeout, err := parseTimeout(timeoutFlag)
	if err != nil {
		return fmt.Errorf("closure: %w", err)
	}
	src, err := nix.NewSource(srcConfig)
	if err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	b := nix.NewBuilder(src, nix.Options{Timeout: timeout, Logger: slog.New(slog.NewTextHandler(logOut, nil))})
	res, err := b.Build(ctx, nix.Request{Packages: names, System: *system, Tag: *tag})
	if err != nil {
		var unknown *nix.UnknownPackagesError
		if errors.As(err, &unknown) {
			return fmt.Errorf("closure: the %s has no package named %s", src, strings.Join(unknown.Names, ", "))
		}
		return fmt.Errorf("closure: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res.Graph.Paths())
}
