package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nixery-go/nixery/layers"
	"github.com/nixery-go/nixery/nix"
)

// ErrDamaged is returned (wrapped) for a blob whose stored bytes do not
// match its digest or what the images that use it record. The blob has
// been quarantined and, if an image has it, is being rebuilt: a retry
// gets the rebuilt blob.
var ErrDamaged = errors.New("images: damaged blob")

// Blob opens the blob h (a layer, a config or a manifest) and returns its
// size. It never returns bytes that do not hash to h:
//
//   - every blob is hashed the first time this process opens it, and again
//     whenever its file changes (a [layers.Verifier]); a verified blob is
//     the store's own *os.File, served with sendfile;
//   - a blob whose bytes do not verify is quarantined, the request gets an
//     error wrapping [ErrDamaged] (a 500), and the blob is rebuilt in the
//     background from what the index records: a config or manifest from
//     the image's bytes, a layer from the layer builder's cache or, if
//     its store paths are gone, from Nix. A request that comes while the
//     rebuild runs waits for it;
//   - a blob that an image has but the store lacks is rebuilt the same
//     way, and this request waits for it;
//   - a blob that no image of the index has (another process wrote it to
//     a shared store) is served when it verifies; when it is missing or
//     damaged, the index first loads the records other processes wrote,
//     and the blob is rebuilt if one of them has it. Otherwise a damaged
//     one is quarantined and missing ones are unknown (fs.ErrNotExist).
//
// A blob that cannot be rebuilt (its image's record predates store paths,
// or the rebuilt bytes differ) is dropped with the images that have it:
// they are built again when next asked for.
func (b *Builder) Blob(ctx context.Context, h v1.Hash) (io.ReadSeekCloser, int64, error) {
	if err := layers.ValidateDigest(h); err != nil {
		return nil, 0, err
	}
	for attempt := 1; ; attempt++ {
		rc, n, err := b.verifier.Open(ctx, h)
		if err == nil {
			if want, ok := b.index.blobSize(h); ok && want != n {
				// Bytes that hash to h, with another size than an image
				// records: the record is what is wrong. Never happens.
				rc.Close()
				return nil, 0, fmt.Errorf("%w: blob %s has %d bytes, %d recorded", ErrDamaged, h, n, want)
			}
			// A pull in progress keeps its image recent: a blob of one
			// image only (its config, its customisation layer) says
			// which; a layer many images share says nothing.
			if owners := b.index.owners(h); len(owners) == 1 {
				b.touch(owners[0])
			}
			return rc, n, nil
		}
		switch {
		case errors.Is(err, layers.ErrDigestMismatch):
			b.quarantine(ctx, h, err)
			if b.owned(ctx, h) {
				go b.repair(context.WithoutCancel(ctx), h)
			}
			return nil, 0, fmt.Errorf("%w: %v; it has been set aside and is being rebuilt: retry", ErrDamaged, err)
		case errors.Is(err, fs.ErrNotExist) && attempt == 1 && b.owned(ctx, h):
			if err := b.repair(ctx, h); err != nil {
				return nil, 0, err
			}
		default:
			return nil, 0, err
		}
	}
}

// BlobURL answers for a blob of an object store ([layers.URLStore]) from
// its metadata, without reading its bytes: its size and, when
// Config.BlobRedirect is set, a URL valid for that long where a client
// can GET it. ok is false for any other store (the filesystem), whose
// blobs are served by [Builder.Blob]. A blob that an image has but the
// store lacks is rebuilt first, as for Blob.
//
// A redirected blob is not hashed on the way: it was verified when it
// was written (see package layers/s3store), and the background scrub
// ([Builder.Scrub]) hashes it through the store now and then, and
// quarantines and rebuilds it if it is damaged. A blob whose stored size
// is not what an image records is served by Blob instead (url ""), which
// hashes it.
func (b *Builder) BlobURL(ctx context.Context, h v1.Hash) (url string, size int64, ok bool, err error) {
	us, isURL := b.cfg.Store.(layers.URLStore)
	if !isURL {
		return "", 0, false, nil
	}
	if err := layers.ValidateDigest(h); err != nil {
		return "", 0, true, err
	}
	n, err := b.cfg.Store.Stat(ctx, h)
	if errors.Is(err, fs.ErrNotExist) && b.owned(ctx, h) {
		if err := b.repair(ctx, h); err != nil {
			return "", 0, true, err
		}
		n, err = b.cfg.Store.Stat(ctx, h)
	}
	if err != nil {
		return "", 0, true, err
	}
	if want, ok := b.index.blobSize(h); ok && want != n {
		return "", 0, false, nil // Blob finds out
	}
	if owners := b.index.owners(h); len(owners) == 1 {
		b.touch(owners[0])
	}
	if b.cfg.BlobRedirect <= 0 {
		return "", n, true, nil
	}
	u, err := us.URL(ctx, h, b.cfg.BlobRedirect)
	if err != nil {
		return "", 0, true, err
	}
	return u, n, true, nil
}

// owned reports whether an image of the index has h, loading the records
// of other processes first if none does.
func (b *Builder) owned(ctx context.Context, h v1.Hash) bool {
	if len(b.index.owners(h)) > 0 {
		return true
	}
	b.refresh(ctx)
	return len(b.index.owners(h)) > 0
}

// refreshEvery bounds how often a request for an unknown damaged or
// missing blob makes the index read the records of other processes.
const refreshEvery = 10 * time.Second

// refresh loads the records that other processes wrote, at most every
// refreshEvery, and rebuilds the blobs they lack in the background.
func (b *Builder) refresh(ctx context.Context) {
	b.refreshMu.Lock()
	defer b.refreshMu.Unlock()
	if time.Since(b.refreshed) < refreshEvery || b.index.dir == "" {
		return
	}
	b.refreshed = time.Now()
	_, _, missing, err := b.index.refresh(ctx)
	if err != nil {
		b.log.Warn("cannot read the image index", "error", err)
	}
	b.repairAll(missing)
}

// repairAll rebuilds the blobs hs one after the other, in the background.
func (b *Builder) repairAll(hs []v1.Hash) {
	if len(hs) == 0 {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for _, h := range hs {
			if b.ctx.Err() != nil {
				return
			}
			b.repair(b.ctx, h)
		}
	}()
}

// quarantine sets the damaged blob h aside.
func (b *Builder) quarantine(ctx context.Context, h v1.Hash, cause error) {
	b.verifier.Forget(h)
	if err := layers.Quarantine(context.WithoutCancel(ctx), b.cfg.Store, h); err != nil {
		b.log.Error("cannot quarantine a damaged blob", "digest", h, "error", err)
		return
	}
	b.log.Error("quarantined a damaged blob", "digest", h, "error", cause)
}

// repair rebuilds the blob h from an image that has it, waiting for a
// rebuild under way; one rebuild runs per blob. If no image can rebuild it,
// the images that have it are dropped.
func (b *Builder) repair(ctx context.Context, h v1.Hash) error {
	_, err := b.repairs.Do(ctx, h.String(), func(context.Context) (struct{}, error) {
		// The rebuild carries on for later requests when this one leaves;
		// Close stops it.
		return struct{}{}, b.rebuildBlob(b.ctx, h)
	})
	return err
}

func (b *Builder) rebuildBlob(ctx context.Context, h v1.Hash) error {
	if n, err := b.cfg.Store.Stat(ctx, h); err == nil {
		want, ok := b.index.blobSize(h)
		if !ok || want == n {
			return nil // rebuilt meanwhile (by another process, say); Open verifies it
		}
		b.quarantine(ctx, h, fmt.Errorf("%d bytes, %d recorded", n, want))
	}
	owners := b.index.owners(h)
	if len(owners) == 0 {
		return fmt.Errorf("%w: no image has blob %s", fs.ErrNotExist, h)
	}
	start := time.Now()
	var errs []error
	for _, img := range owners {
		err := b.rebuild(ctx, img, h)
		if err == nil {
			b.log.Info("rebuilt a blob", "digest", h, "key", img.Key, "duration", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	for _, img := range owners {
		b.index.drop(img, "blob "+h.String()+" cannot be rebuilt: "+err.Error(), false)
	}
	return fmt.Errorf("%w: blob %s cannot be rebuilt (%v); its images are built again when asked for", ErrDamaged, h, err)
}

// rebuildable reports whether layer i of img can be rebuilt.
func (img *Image) rebuildable(i int) bool {
	if i == len(img.layers)-1 {
		return img.outputs != nil
	}
	return img.groups != nil
}

// rebuild writes the blob h of img again.
func (b *Builder) rebuild(ctx context.Context, img *Image, h v1.Hash) error {
	if img.configD.Digest == h {
		_, err := layers.Put(ctx, b.cfg.Store, img.config)
		return err
	}
	for _, m := range append(slices.Clone(img.manifests), img.indexList()...) {
		if m.Digest == h {
			_, err := layers.Put(ctx, b.cfg.Store, m.Data)
			return err
		}
	}
	for _, body := range img.sbomBlobs() {
		if d := manifestDescriptor("", body); d.Digest == h {
			_, err := layers.Put(ctx, b.cfg.Store, body)
			return err
		}
	}
	for i, l := range img.layers {
		if l.Digest != h {
			continue
		}
		if !img.rebuildable(i) {
			return errors.New("its record has no store paths")
		}
		b.inflight.add(h)
		defer b.inflight.done(h)
		var need []string
		if i < len(img.groups) {
			need = img.groups[i]
		} else {
			for _, p := range img.outputs {
				need = append(need, p.Path)
			}
		}
		res, err := b.realise(ctx, img, need)
		if err != nil {
			return err
		}
		defer res.Release()
		var d layers.Descriptor
		if i < len(img.groups) {
			d, err = b.cfg.Layers.Layer(ctx, img.groups[i])
		} else {
			d, err = b.customLayer(ctx, img.outputs)
		}
		if err != nil {
			return err
		}
		if d != l {
			return fmt.Errorf("rebuilt as %s (%d bytes), not %s", d.Digest, d.Size, l.Digest)
		}
		return nil
	}
	return fmt.Errorf("image %s has no blob %s", img.Key, h)
}

// realise makes sure the store paths a rebuild reads are in the Nix store,
// running Nix for the image's packages if one is not. The result, if any,
// holds a GC root until released.
func (b *Builder) realise(ctx context.Context, img *Image, paths []string) (*nix.Result, error) {
	missing := ""
	for _, p := range paths {
		if _, err := fs.Stat(b.cfg.StoreFS, strings.TrimPrefix(p, "/")); err != nil {
			missing = p
			break
		}
	}
	if missing == "" {
		return nil, nil
	}
	b.log.LogAttrs(ctx, slog.LevelInfo, "realising store paths again to rebuild a layer", slog.String("missing", missing), slog.String("key", img.Key))
	res, err := b.cfg.Nix.Build(ctx, nix.Request{Packages: img.Packages, System: img.System, Tag: img.tag})
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if _, ok := res.Graph.Lookup(p); !ok {
			res.Release()
			return nil, fmt.Errorf("the packages no longer give store path %s", p)
		}
	}
	return res, nil
}

// customLayer builds the customisation layer of pkgs.
func (b *Builder) customLayer(ctx context.Context, pkgs []nix.Package) (layers.Descriptor, error) {
	tree, err := customisation(b.cfg.StoreFS, pkgs)
	if err != nil {
		return layers.Descriptor{}, err
	}
	d, err := layers.WriteTarLayer(ctx, b.cfg.Store, 0, func(tw *tar.Writer) error { return writeTree(tw, "", tree) })
	if err != nil {
		return layers.Descriptor{}, fmt.Errorf("images: customisation layer: %w", err)
	}
	return d, nil
}

// missingBlobs returns the blobs of img the store lacks or holds with
// another size.
func (b *Builder) missingBlobs(ctx context.Context, img *Image) []v1.Hash {
	var hs []v1.Hash
	for h, want := range img.blobs() {
		if n, err := b.cfg.Store.Stat(ctx, h); err != nil || n != want {
			hs = append(hs, h)
		}
	}
	return hs
}
