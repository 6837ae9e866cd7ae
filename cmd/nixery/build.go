package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixery-go/nixery"
	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/nix"
)

func init() {
	register("build", "build an image and write it as a docker-archive or an OCI layout", func(ctx context.Context, args []string) error {
		return buildCmd(ctx, args, os.Getenv, os.Stdout, os.Stderr)
	})
	register("push", "build an image and push it to a registry", func(ctx context.Context, args []string) error {
		return pushCmd(ctx, args, os.Getenv, os.Stdout, os.Stderr)
	})
}

// Formats of `nixery build -format`.
const (
	formatDockerArchive = "docker-archive"
	formatOCILayout     = "oci-layout"
)

const buildUsage = `usage: nixery build [flags] -o PATH NAME

Builds the image NAME (shell/curl, arm64/hello: the names 'nixery serve'
serves) and writes it to PATH: a tar archive that 'docker load -i PATH'
reads (-format docker-archive, the default; tagged NAME:latest unless -tag
says otherwise), or an OCI image layout directory that 'skopeo inspect
oci:PATH' reads (-format oci-layout; its image is named latest unless -tag
says otherwise).

The image is built by the same builder, into the same storage, as
'nixery serve' builds it, with the same flags and variables: a server
started later on the same STORAGE_PATH serves it from its cache, and this
command finds what the server built. Unknown packages and bad names are
the errors a pull gets. Progress goes to stderr: bars on a terminal, plain
lines otherwise (-progress).

`

const pushUsage = `usage: nixery push [flags] NAME REF

Builds the image NAME as 'nixery build' does and pushes it to the
registry reference REF (registry.example.com/team/curl:v1), with the
credentials of the Docker configuration (~/.docker/config.json and its
credential helpers, as 'docker login' leaves them; DOCKER_CONFIG moves it).
Registries on loopback are spoken to over plain HTTP; -insecure does so for
any other. The pushed manifest is the Docker one a pull from 'nixery serve'
gets, with the same digest, printed on stdout as REF@DIGEST.

`

// cliFlags are what `nixery build` and `nixery push` share: the builder's
// configuration (as `nixery serve` reads it), the system, the progress
// mode and the log.
type cliFlags struct {
	c        config
	finish   func() error
	system   string
	progress string
	verbose  bool
}

func newCLIFlags(fs *flag.FlagSet, getenv func(string) string) *cliFlags {
	f := &cliFlags{}
	var timeout string
	f.finish = f.c.builderFlags(fs, envLookup(getenv), &timeout)
	fs.StringVar(&f.system, "system", "", "`system` to build for: "+strings.Join(nix.Systems, " or ")+" (default: the name's, x86_64-linux unless it has arm64)")
	fs.StringVar(&f.progress, "progress", progressAuto, "progress on stderr: auto (bars on a terminal, plain lines otherwise), bars, plain or none")
	fs.BoolVar(&f.verbose, "v", false, "log what the builder does (each Nix command, each layer) to stderr")
	return f
}

// check validates the flags after parsing.
func (f *cliFlags) check() error {
	if err := f.finish(); err != nil {
		return err
	}
	if f.system != "" && !slices.Contains(nix.Systems, f.system) {
		return fmt.Errorf("-system %q: want %s", f.system, strings.Join(nix.Systems, " or "))
	}
	switch f.progress {
	case progressAuto, progressBars, progressPlain, progressNone:
	default:
		return fmt.Errorf("-progress %q: want auto, bars, plain or none", f.progress)
	}
	// One command builds one image: no build waits behind others, and the
	// storage is left to the server's collector and scrub.
	f.c.maxQueue = nix.DefaultMaxQueue
	f.c.scrubRate = -1
	return nil
}

// open starts the library on the configured storage, its build events
// turned into the phases of p and, with -v, its log written above the
// progress.
func (f *cliFlags) open(ctx context.Context, p *progress) (*nixery.Server, *buildPhases, error) {
	var next slog.Handler = slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 1})
	if f.verbose {
		next = slog.NewTextHandler(p.logWriter(), nil)
	}
	opts, err := f.c.storeOptions(ctx)
	if err != nil {
		return nil, nil, err
	}
	srv, err := nixery.New(ctx, append(opts, nixery.WithLogger(slog.New(next)))...)
	if err != nil {
		return nil, nil, err
	}
	phases := newBuildPhases(p)
	srv.Listen(phases.event)
	return srv, phases, nil
}

// image builds name, reporting its phases.
func (f *cliFlags) image(ctx context.Context, srv *nixery.Server, phases *buildPhases, p *progress, imageName string, oci bool) (v1.Image, error) {
	start := time.Now()
	if err := phases.start(imageName, func() error {
		_, err := srv.Popularity(ctx)
		return err
	}); ctx.Err() != nil {
		return nil, err
	}
	img, err := srv.ImageWith(ctx, imageName, nixery.ImageOptions{System: f.system, OCI: oci})
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var size int64
	for _, l := range m.Layers {
		size += l.Size
	}
	how := "built"
	if !phases.built() {
		how = "in the cache"
	}
	p.Note("%s %s: %d layers, %s, in %s", imageName, how, len(m.Layers), sizeText(size), time.Since(start).Round(time.Millisecond))
	return img, nil
}

// buildCmd implements `nixery build`.
func buildCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, buildUsage)
		fs.PrintDefaults()
	}
	f := newCLIFlags(fs, getenv)
	format := fs.String("format", formatDockerArchive, "output `format`: docker-archive or oci-layout")
	out := fs.String("o", "", "output `path`: the archive file, or the layout directory (required)")
	tag := fs.String("tag", "", "docker-archive: the image reference in the archive (default NAME:latest, lower-cased); oci-layout: the image's name in the layout (default latest)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("build: want one image name")
	}
	imageName := fs.Arg(0)
	if *out == "" {
		fs.Usage()
		return errors.New("build: -o PATH is required")
	}
	if *format != formatDockerArchive && *format != formatOCILayout {
		return fmt.Errorf("build: -format %q: want docker-archive or oci-layout", *format)
	}
	if err := f.check(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	var ref name.Reference
	if *format == formatDockerArchive {
		var err error
		if ref, err = archiveTag(imageName, *tag); err != nil {
			// A name that is no image says so, as the registry would.
			if _, nerr := images.ParseName(imageName, 0); nerr != nil {
				return fmt.Errorf("build %s: %w", imageName, nerr)
			}
			return fmt.Errorf("build: %w", err)
		}
	}

	p := newProgress(ctx, stderr, f.progress)
	var digest v1.Hash
	err := func() error {
		defer p.Close()
		srv, phases, err := f.open(ctx, p)
		if err != nil {
			return err
		}
		defer srv.Close()
		img, err := f.image(ctx, srv, phases, p, imageName, *format == formatOCILayout)
		if err != nil {
			return err
		}
		if digest, err = img.Digest(); err != nil {
			return err
		}
		total, err := compressedSize(img)
		if err != nil {
			return err
		}
		t := p.Bytes("writing "+*out, total)
		defer t.Done()
		img = countingImage{Image: img, t: t}
		if *format == formatDockerArchive {
			return writeArchive(*out, ref, img)
		}
		refName := *tag
		if refName == "" {
			refName = "latest"
		}
		return writeLayout(*out, refName, img)
	}()
	if err != nil {
		return fmt.Errorf("build %s: %w", imageName, err)
	}
	fmt.Fprintf(stdout, "%s %s\n", *out, digest)
	return nil
}

// archiveTag is the reference a docker-archive is tagged with: tag, or the
// image name lower-cased (Docker's references are) at latest.
func archiveTag(imageName, tag string) (name.Reference, error) {
	if tag != "" {
		t, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("-tag %q: %w", tag, err)
		}
		return t, nil
	}
	t, err := name.NewTag(strings.ToLower(imageName) + ":latest")
	if err != nil {
		return nil, fmt.Errorf("%q is no Docker reference to tag the archive with; give one with -tag", imageName)
	}
	return t, nil
}

// writeArchive writes img to path as a docker-archive, through a temporary
// file so that path is whole or absent.
func writeArchive(path string, ref name.Reference, img v1.Image) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := tarball.Write(ref, img, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeLayout writes img into the OCI layout at dir (created if need be),
// named refName; an image of that name already there is replaced.
func writeLayout(dir, refName string, img v1.Image) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	return p.ReplaceImage(img, match.Annotation(ocispec.AnnotationRefName, refName),
		layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: refName}))
}

// compressedSize is the bytes of an image's layers.
func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// countingImage counts the layer bytes read from it into a transfer.
type countingImage struct {
	v1.Image
	t *transfer
}

func (c countingImage) Layers() ([]v1.Layer, error) {
	ls, err := c.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = countingLayer{Layer: l, t: c.t}
	}
	return out, nil
}

func (c countingImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := c.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return countingLayer{Layer: l, t: c.t}, nil
}

type countingLayer struct {
	v1.Layer
	t *transfer
}

func (l countingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return countingReader{ReadCloser: rc, t: l.t}, nil
}

// pushCmd implements `nixery push`.
func pushCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, pushUsage)
		fs.PrintDefaults()
	}
	f := newCLIFlags(fs, getenv)
	insecure := fs.Bool("insecure", false, "speak plain HTTP to the registry (loopback registries always are)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("push: want an image name and a reference")
	}
	imageName, refText := fs.Arg(0), fs.Arg(1)
	if err := f.check(); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(refText, opts...)
	if err != nil {
		return fmt.Errorf("push: reference %q: %w", refText, err)
	}

	p := newProgress(ctx, stderr, f.progress)
	var digest v1.Hash
	err = func() error {
		defer p.Close()
		srv, phases, err := f.open(ctx, p)
		if err != nil {
			return err
		}
		defer srv.Close()
		img, err := f.image(ctx, srv, phases, p, imageName, false)
		if err != nil {
			return err
		}
		if digest, err = img.Digest(); err != nil {
			return err
		}
		t := p.Bytes("pushing "+ref.String(), 0)
		defer t.Done()
		updates := make(chan v1.Update, 64)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range updates {
				t.Set(u.Complete, u.Total)
			}
		}()
		err = remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithProgress(updates))
		if err == nil {
			<-done // remote.Write closed updates
		}
		return err
	}()
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			err = fmt.Errorf("%w\n(the registry refused the credentials of the Docker configuration, or there were none: log in with 'docker login %s', or point DOCKER_CONFIG at a configuration that has them)", err, ref.Context().RegistryStr())
		}
		return fmt.Errorf("push %s to %s: %w", imageName, refText, err)
	}
	fmt.Fprintf(stdout, "%s@%s\n", ref.Context().Name(), digest)
	return nil
}
