package layers

import (
	"archive/tar"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nixery-go/nixery/internal/testutil"
)

// TestImageValidates makes an image of two store-path layers and a
// customisation layer from WriteTarLayer, checks it with validate.Image and
// `crane validate --tarball`, and checks that the flattened image holds
// exactly the closure and the customisation file.
func TestImageValidates(t *testing.T) {
	testutil.RequireTools(t, "crane")
	s := newFakeStore(t)
	ctx := context.Background()
	a, store := newTestAssembler(t, s.Root, Options{ChunkSize: testChunk})
	d1, err := a.Layer(ctx, []string{s.Path("big-4.0")})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := a.Layer(ctx, []string{s.Path("tree-1.0"), s.Path("file-2.0"), s.Path("link-3.0")})
	if err != nil {
		t.Fatal(err)
	}
	custom := func(tw *tar.Writer) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		body := []byte("hello\n")
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/motd", Size: int64(len(body)), Mode: 0o444, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	d3, err := WriteTarLayer(ctx, store, 0, custom)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := WriteTarLayer(ctx, store, 0, custom); err != nil || again != d3 {
		t.Errorf("WriteTarLayer is not deterministic: %+v, %+v (%v)", d3, again, err)
	}
	img, err := mutate.AppendLayers(empty.Image, V1Layer(ctx, store, d1, types.OCILayer), V1Layer(ctx, store, d2, types.OCILayer), V1Layer(ctx, store, d3, types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range []Descriptor{d1, d2, d3} {
		if l := m.Layers[i]; l.Digest != d.Digest || l.Size != d.Size {
			t.Errorf("manifest layer %d: %v %d, want %v %d", i, l.Digest, l.Size, d.Digest, d.Size)
		}
	}
	file := filepath.Join(t.TempDir(), "image.tar")
	ref, _ := name.ParseReference("nixery.test/layers:test")
	if err := tarball.WriteToFile(file, ref, img); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("crane", "validate", "--tarball", file).CombinedOutput(); err != nil {
		t.Fatalf("crane validate --tarball: %v\n%s", err, out)
	}
	// The image's files are exactly the closure plus the customisation.
	rc := mutate.Extract(img)
	defer rc.Close()
	entries := testutil.ReadTar(t, rc)
	got := describeTar(t, entries)
	want := expectEntries(t, s.Root, s.All())
	want = append(want, "dir etc/ 755", "file etc/motd 444 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
	// mutate.Extract drops the trailing slash of directory names.
	for i, w := range want {
		if strings.HasPrefix(w, "dir ") {
			want[i] = strings.Replace(w, "/ ", " ", 1)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	diffLines(t, "flattened image", got, want)
}
