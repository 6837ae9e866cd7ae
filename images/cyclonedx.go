package images

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nixery-go/nixery/closure"
)

// The CycloneDX 1.6 JSON document, as much of it as an image's SBOM uses.
type cdxDocument struct {
	BOMFormat    string          `json:"bomFormat"`
	SpecVersion  string          `json:"specVersion"`
	SerialNumber string          `json:"serialNumber"`
	Version      int             `json:"version"`
	Metadata     cdxMetadata     `json:"metadata"`
	Components   []cdxComponent  `json:"components"`
	Dependencies []cdxDependency `json:"dependencies"`
}

type cdxMetadata struct {
	Timestamp string       `json:"timestamp"`
	Tools     cdxTools     `json:"tools"`
	Component cdxComponent `json:"component"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	Type       string        `json:"type"`
	BOMRef     string        `json:"bom-ref,omitempty"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	Hashes     []cdxHash     `json:"hashes,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxHash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxDependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// cycloneDXFor returns the CycloneDX 1.6 JSON document of an image whose
// closure is g, the same facts as sbomFor's SPDX: the image is the
// metadata's component (a container) and depends on the top-level store
// paths; every store path is a component (bom-ref its store path, name,
// version, purl and NAR hash as in the SPDX document, the store path as
// the nix:store-path property) whose dependencies are its references.
// The serial number is a UUID made of the image key, so the same image
// gives the same bytes.
func cycloneDXFor(title, key string, g *closure.Graph) ([]byte, error) {
	const imageRef = "image"
	paths := g.Paths()
	doc := cdxDocument{
		BOMFormat:    "CycloneDX",
		SpecVersion:  "1.6",
		SerialNumber: "urn:uuid:" + uuidOf(key),
		Version:      1,
		Metadata: cdxMetadata{
			Timestamp: Created.UTC().Format(time.RFC3339),
			Tools:     cdxTools{Components: []cdxComponent{{Type: "application", Name: "nixery"}}},
			Component: cdxComponent{Type: "container", BOMRef: imageRef, Name: title},
		},
		Components:   make([]cdxComponent, 0, len(paths)),
		Dependencies: make([]cdxDependency, 0, len(paths)+1),
	}
	roots := make([]string, 0, len(g.RootIndices()))
	for _, i := range g.RootIndices() {
		roots = append(roots, paths[i].Path)
	}
	doc.Dependencies = append(doc.Dependencies, cdxDependency{Ref: imageRef, DependsOn: roots})
	for i, p := range paths {
		name, version, output := parseStoreName(closure.Name(p.Path))
		c := cdxComponent{
			Type:       "library",
			BOMRef:     p.Path,
			Name:       name,
			Version:    version,
			PURL:       purl(name, version, output),
			Properties: []cdxProperty{{Name: "nix:store-path", Value: p.Path}},
		}
		if sum, err := narHashHex(p.NarHash); err == nil {
			c.Hashes = []cdxHash{{Alg: "SHA-256", Content: sum}}
		} else if p.NarHash != "" {
			return nil, fmt.Errorf("images: sbom: %s: %w", p.Path, err)
		}
		doc.Components = append(doc.Components, c)
		deps := make([]string, 0, len(g.Refs(i)))
		for _, j := range g.Refs(i) {
			deps = append(deps, paths[j].Path)
		}
		doc.Dependencies = append(doc.Dependencies, cdxDependency{Ref: p.Path, DependsOn: deps})
	}
	return json.Marshal(doc)
}

// uuidOf formats the first 128 bits of a hex key as a UUID (version 8,
// the RFC 9562 version for UUIDs made by the application's own means).
func uuidOf(key string) string {
	b := []byte(fmt.Sprintf("%032s", key)[:32])
	b[12] = '8'                       // version 8
	b[16] = "89ab"[hexValue(b[16])&3] // variant 10xx
	s := string(b)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

func hexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}
