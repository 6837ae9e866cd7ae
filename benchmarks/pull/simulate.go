package pull

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/corpus"
	"github.com/nixery-go/nixery/images"
	"github.com/nixery-go/nixery/layers"
)

// Prediction is what [Simulate] expects Docker to download.
type Prediction struct {
	// Layers are each image's store path layers in manifest order, the
	// customisation layer left out. A layer's Digest is its store paths
	// joined with ":" (a stand-in: equal sets give equal blobs), its Size
	// the exact size of the blob the layers package builds.
	Layers [][]Descriptor
	// PerBlob and Chain are [Models] of Layers, per image.
	PerBlob, Chain []int64
}

// ChainBytes is the sum of Chain: the layer bytes Docker should download,
// customisation layers excluded; compare it with
// [Result.StorePathLayerBytes].
func (p *Prediction) ChainBytes() int64 { return sum(p.Chain) }

// PerBlobBytes is the sum of PerBlob.
func (p *Prediction) PerBlobBytes() int64 { return sum(p.PerBlob) }

func sum(s []int64) int64 {
	var t int64
	for _, v := range s {
		t += v
	}
	return t
}

// Simulate predicts, from the corpus alone, the layers `nixery serve`
// gives images (as [Run] pulls them) and the bytes Docker downloads for
// them: each image's packages ("shell" expanded to
// [images.ShellPackages], aliases resolved, cacert and iana-etc added)
// are closed over the corpus graph, grouped with [layers.Group] and the
// corpus popularity into budget-1 layers (budget counts the customisation
// layer, as NIXERY_MAX_LAYERS does; 0 means [layers.DefaultBudget]), and
// each layer is built by a layers.Assembler into cacheDir, which gives its
// exact size. Attribute names must be spelt as in
// the corpus.
func Simulate(ctx context.Context, c *corpus.Corpus, imgs [][]string, budget int, cacheDir string) (*Prediction, error) {
	if budget <= 0 {
		budget = layers.DefaultBudget
	}
	store, err := layers.NewFSStore(filepath.Join(cacheDir, "store"))
	if err != nil {
		return nil, err
	}
	asm, err := layers.NewAssembler(store, filepath.Join(cacheDir, "cache"), layers.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	p := &Prediction{}
	for _, pkgs := range imgs {
		var attrs []string
		for _, a := range pkgs {
			if a == "shell" {
				attrs = append(attrs, images.ShellPackages...)
			} else {
				attrs = append(attrs, a)
			}
		}
		attrs = append(attrs, corpus.AttrCacert, corpus.AttrIanaEtc)
		var roots []string
		for _, a := range attrs {
			if t, ok := c.Aliases[a]; ok {
				a = t
			}
			sp, ok := c.Packages[a]
			if !ok {
				return nil, fmt.Errorf("pull: no package %q in the corpus", a)
			}
			roots = append(roots, sp)
		}
		g, err := c.Graph.Subgraph(roots...)
		if err != nil {
			return nil, err
		}
		var list []Descriptor
		for _, group := range layers.Group(g, c.Popularity, budget-1) {
			d, err := asm.Layer(ctx, group)
			if err != nil {
				return nil, err
			}
			list = append(list, Descriptor{Digest: strings.Join(group, ":"), Size: d.Size})
		}
		p.Layers = append(p.Layers, list)
	}
	p.PerBlob, p.Chain = Models(p.Layers)
	return p, nil
}
