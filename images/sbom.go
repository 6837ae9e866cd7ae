package images

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nixery-go/nixery/closure"
	"github.com/nixery-go/nixery/layers"
)

// Media types of an image's SBOM artifacts: each document (SPDX or
// CycloneDX) is its artifact's one layer and its artifactType, and the
// config is the OCI empty descriptor.
const (
	MediaTypeSPDX      = "application/spdx+json"
	MediaTypeCycloneDX = "application/vnd.cyclonedx+json"
	MediaTypeOCIEmpty  = ocispec.MediaTypeEmptyJSON
	spdxVersion        = "SPDX-2.3"
	spdxNamespaceStart = "https://nixery.dev/spdx/"
)

// Annotations nixery puts on manifests, besides the OCI ones
// (org.opencontainers.image.created, .title, .source, .revision).
const (
	// AnnotationStorePaths lists the image's top-level store paths (those
	// its packages resolved to), sorted and separated by commas.
	AnnotationStorePaths = "dev.nixery.store-paths"
)

// emptyJSON is the OCI empty blob, the config of every SBOM artifact.
var emptyJSON = []byte("{}")

// The SPDX 2.3 JSON document, as much of it as an image's SBOM uses. Field
// order is the order of the JSON.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID                string            `json:"SPDXID"`
	Name                  string            `json:"name"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	PackageFileName       string            `json:"packageFileName,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	Checksums             []spdxChecksum    `json:"checksums,omitempty"`
	LicenseConcluded      string            `json:"licenseConcluded"`
	LicenseDeclared       string            `json:"licenseDeclared"`
	CopyrightText         string            `json:"copyrightText"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	Comment               string            `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

const (
	spdxDocumentID = "SPDXRef-DOCUMENT"
	spdxImageID    = "SPDXRef-Image"
	noAssertion    = "NOASSERTION"
)

// sbomFor returns the SPDX 2.3 JSON document of an image whose closure is
// g: a package for the image, which CONTAINS one package per store path,
// and a DEPENDS_ON relationship for every reference between store paths.
// Each store path's package has the name and version parsed from the path
// ([parseStoreName]), the store path as its file name, the SHA-256 of its
// NAR as its checksum (when Nix reported one) and a purl
// (pkg:nix/NAME@VERSION). title names the image and key, the image key,
// makes the document's namespace unique. The bytes depend on nothing
// else: packages come in the graph's order (by store path), relationships
// sorted, and the creation time is [Created].
func sbomFor(title, key string, g *closure.Graph) ([]byte, error) {
	doc := spdxDocument{
		SPDXVersion:       spdxVersion,
		DataLicense:       "CC0-1.0",
		SPDXID:            spdxDocumentID,
		Name:              title,
		DocumentNamespace: spdxNamespaceStart + key,
		CreationInfo: spdxCreationInfo{
			Created:  Created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: nixery"},
		},
		Packages:      make([]spdxPackage, 0, g.Len()+1),
		Relationships: make([]spdxRelationship, 0, 2*g.Len()+1),
	}
	doc.Packages = append(doc.Packages, spdxPackage{
		SPDXID:                spdxImageID,
		Name:                  title,
		DownloadLocation:      noAssertion,
		LicenseConcluded:      noAssertion,
		LicenseDeclared:       noAssertion,
		CopyrightText:         noAssertion,
		PrimaryPackagePurpose: "CONTAINER",
		Comment:               "The container image: the store paths below and a customisation layer linking the top-level ones into /bin, /etc, /lib, /sbin and /share.",
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{spdxDocumentID, "DESCRIBES", spdxImageID})
	paths := g.Paths()
	ids := make([]string, len(paths))
	for i, p := range paths {
		ids[i] = spdxPackageID(p.Path)
	}
	roots := map[int]bool{}
	for _, i := range g.RootIndices() {
		roots[i] = true
	}
	for i, p := range paths {
		name, version, output := parseStoreName(closure.Name(p.Path))
		pkg := spdxPackage{
			SPDXID:           ids[i],
			Name:             name,
			VersionInfo:      version,
			PackageFileName:  p.Path,
			DownloadLocation: noAssertion,
			LicenseConcluded: noAssertion,
			LicenseDeclared:  noAssertion,
			CopyrightText:    noAssertion,
			ExternalRefs: []spdxExternalRef{{
				ReferenceCategory: "PACKAGE-MANAGER",
				ReferenceType:     "purl",
				ReferenceLocator:  purl(name, version, output),
			}},
		}
		if sum, err := narHashHex(p.NarHash); err == nil {
			pkg.Checksums = []spdxChecksum{{Algorithm: "SHA256", ChecksumValue: sum}}
		} else if p.NarHash != "" {
			return nil, fmt.Errorf("images: sbom: %s: %w", p.Path, err)
		}
		if roots[i] {
			pkg.Comment = "A top-level store path: a package of the image's name."
		}
		doc.Packages = append(doc.Packages, pkg)
		doc.Relationships = append(doc.Relationships, spdxRelationship{spdxImageID, "CONTAINS", ids[i]})
	}
	for i := range paths {
		for _, j := range g.Refs(i) {
			doc.Relationships = append(doc.Relationships, spdxRelationship{ids[i], "DEPENDS_ON", ids[j]})
		}
	}
	slices.SortFunc(doc.Relationships[1:], func(a, b spdxRelationship) int {
		return cmp.Or(strings.Compare(a.SPDXElementID, b.SPDXElementID),
			strings.Compare(a.RelationshipType, b.RelationshipType),
			strings.Compare(a.RelatedSPDXElement, b.RelatedSPDXElement))
	})
	return json.Marshal(doc)
}

// spdxPackageID is the SPDX identifier of a store path's package: its
// hash part, unique in a closure and made of letters and digits only.
func spdxPackageID(storePath string) string {
	base := strings.TrimPrefix(storePath, closure.StoreDir+"/")
	hash, _, _ := strings.Cut(base, "-")
	return "SPDXRef-Package-" + hash
}

// outputNames are the names of the outputs Nix appends to a store path's
// name (glibc-2.36-bin); the default output "out" has none.
var outputNames = []string{"bin", "dev", "lib", "man", "doc", "info", "debug", "static", "devdoc", "locale", "out"}

// parseStoreName splits a store path's name the way Nix splits a
// derivation name (builtins.parseDrvName): the version starts at the first
// dash followed by something other than a letter ("glibc-2.36" gives glibc
// and 2.36, "bash-interactive-5.2.15" bash-interactive and 5.2.15). A
// trailing output name after a version ("openssl-3.0.9-bin") is returned
// as output. A name without a version (nss-cacert-host) has an empty one.
func parseStoreName(s string) (name, version, output string) {
	name = s
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && !isLetter(s[i+1]) {
			name, version = s[:i], s[i+1:]
			break
		}
	}
	if version == "" {
		return name, "", ""
	}
	if i := strings.LastIndexByte(version, '-'); i >= 0 && slices.Contains(outputNames, version[i+1:]) {
		version, output = version[:i], version[i+1:]
	}
	return name, version, output
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

// purl returns the package URL of a store path's package,
// pkg:nix/NAME@VERSION (with ?output=OUTPUT for an output other than the
// default one), percent-encoding what the purl specification asks.
func purl(name, version, output string) string {
	var sb strings.Builder
	sb.WriteString("pkg:nix/")
	sb.WriteString(purlEscape(name))
	if version != "" {
		sb.WriteByte('@')
		sb.WriteString(purlEscape(version))
	}
	if output != "" {
		sb.WriteString("?output=")
		sb.WriteString(purlEscape(output))
	}
	return sb.String()
}

// purlEscape percent-encodes every byte but letters, digits and ".-_~".
func purlEscape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isLetter(c) || c >= '0' && c <= '9' || strings.IndexByte(".-_~", c) >= 0 {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&15])
	}
	return sb.String()
}

var errNarHash = errors.New("not a SHA-256 NAR hash")

// narHashHex returns the hex digits of a NAR hash as Nix prints it: SRI
// (sha256-<base64>, what nix path-info --json prints), or sha256:<base32>
// or sha256:<hex> (older Nix).
func narHashHex(s string) (string, error) {
	if rest, ok := strings.CutPrefix(s, "sha256-"); ok {
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil || len(b) != 32 {
			return "", errNarHash
		}
		return hex.EncodeToString(b), nil
	}
	rest, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return "", errNarHash
	}
	switch len(rest) {
	case 64:
		if _, err := hex.DecodeString(rest); err != nil {
			return "", errNarHash
		}
		return strings.ToLower(rest), nil
	case 52:
		b, err := decodeNixBase32(rest, 32)
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(b), nil
	}
	return "", errNarHash
}

// decodeNixBase32 decodes Nix's base-32 encoding of a hash of n bytes
// (its own alphabet, least significant digit last).
func decodeNixBase32(s string, n int) ([]byte, error) {
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		d := strings.IndexByte(nixBase32, s[len(s)-1-k])
		if d < 0 {
			return nil, errNarHash
		}
		b := uint(k * 5)
		i, j := int(b/8), b%8
		out[i] |= byte(d << j)
		if i < n-1 {
			out[i+1] |= byte(d >> (8 - j))
		} else if d>>(8-j) != 0 {
			return nil, errNarHash
		}
	}
	return out, nil
}

// nixBase32 is the alphabet of Nix's base-32 hashes.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// sbomTitles name the SBOMs' files (the layer's title, which oras pull
// writes).
var sbomTitles = map[types.MediaType]string{
	MediaTypeSPDX:      "sbom.spdx.json",
	MediaTypeCycloneDX: "sbom.cdx.json",
}

// sbomManifest returns the OCI artifact manifest of an SBOM doc (its Data
// ignored) whose subject is the image manifest subject.
func sbomManifest(subject v1.Descriptor, doc v1.Descriptor, annotations map[string]string) ([]byte, error) {
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: string(doc.MediaType),
		Config:       ocispec.DescriptorEmptyJSON,
		Layers: []ocispec.Descriptor{{
			MediaType:   string(doc.MediaType),
			Digest:      digest.Digest(doc.Digest.String()),
			Size:        doc.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: sbomTitles[doc.MediaType]},
		}},
		Subject: &ocispec.Descriptor{
			MediaType: string(subject.MediaType),
			Digest:    digest.Digest(subject.Digest.String()),
			Size:      subject.Size,
		},
		Annotations: annotations,
	}
	return json.Marshal(m)
}

// referrer is one manifest whose subject is a manifest of an image.
type referrer struct {
	subject v1.Hash
	desc    v1.Descriptor   // with ArtifactType, Annotations and Data
	list    []v1.Descriptor // every referrer of subject, desc among them
}

// sbomReferrers returns the SBOM artifact manifests of an image: for each
// of its manifests (Docker and OCI, which have different digests), one
// per SBOM document, in the order of docs; the manifests share the
// documents.
func sbomReferrers(manifests []v1.Descriptor, docs []v1.Descriptor) ([]referrer, error) {
	created := Created.UTC().Format(time.RFC3339)
	annotations := map[string]string{ocispec.AnnotationCreated: created}
	var out []referrer
	for _, m := range manifests {
		list := make([]v1.Descriptor, 0, len(docs))
		for _, doc := range docs {
			if _, ok := sbomTitles[doc.MediaType]; !ok {
				return nil, fmt.Errorf("images: an SBOM of type %q", doc.MediaType)
			}
			body, err := sbomManifest(m, doc, annotations)
			if err != nil {
				return nil, err
			}
			d := manifestDescriptor(MediaTypeOCIManifest, body)
			d.ArtifactType = string(doc.MediaType)
			d.Annotations = annotations
			list = append(list, d)
		}
		for _, d := range list {
			out = append(out, referrer{subject: m.Digest, desc: d, list: list})
		}
	}
	return out, nil
}

// sbomsFor returns the SBOM documents of an image (see sbomFor and
// cycloneDXFor), SPDX first, each with its media type and bytes as Data.
func sbomsFor(title, key string, g *closure.Graph) ([]v1.Descriptor, error) {
	spdx, err := sbomFor(title, key, g)
	if err != nil {
		return nil, err
	}
	cdx, err := cycloneDXFor(title, key, g)
	if err != nil {
		return nil, err
	}
	return []v1.Descriptor{manifestDescriptor(MediaTypeSPDX, spdx), manifestDescriptor(MediaTypeCycloneDX, cdx)}, nil
}

// emptyDescriptor describes the OCI empty blob.
func emptyDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: types.MediaType(MediaTypeOCIEmpty), Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(string(ocispec.DescriptorEmptyJSON.Digest), "sha256:")}, Size: 2}
}

// Provenancer is implemented by a [Nix] that knows where its package set
// comes from, as package nix's Builder does: source and revision become
// the org.opencontainers.image.source and .revision annotations of the
// images of tag (empty ones are left out).
type Provenancer interface {
	Provenance(tag string) (source, revision string)
}

// annotationsFor returns the annotations of the manifests of an image of
// the attribute paths attrs, whose top-level store paths are roots, at
// tag: its creation time (fixed, [Created], as the config's is), its
// title (the attribute paths joined with slashes: the image's canonical
// name, since every spelling of it gives this one image), the package
// set's source and revision when the Nix says, and the store paths
// ([AnnotationStorePaths]). Nothing in them varies between builds of the
// same image.
func (b *Builder) annotationsFor(tag string, attrs, roots []string) map[string]string {
	a := map[string]string{
		ocispec.AnnotationCreated: Created.UTC().Format(time.RFC3339),
		ocispec.AnnotationTitle:   strings.Join(attrs, "/"),
		AnnotationStorePaths:      strings.Join(roots, ","),
	}
	if p, ok := b.cfg.Nix.(Provenancer); ok {
		source, revision := p.Provenance(tag)
		if source != "" {
			a[ocispec.AnnotationSource] = source
		}
		if revision != "" {
			a[ocispec.AnnotationRevision] = revision
		}
	}
	return a
}

// Referrers returns the descriptors of the manifests whose subject is the
// manifest h (for an image built since SBOMs were, its SBOM artifact),
// each with its artifactType, annotations and bytes as Data. A manifest
// that is unknown, or has no referrers, has none: the referrers API
// answers it with an empty index. h must be a valid digest. A manifest
// that is in the store but in no image of the index (another process
// sharing the store built it) makes the index load the records other
// processes wrote first, as [Builder.Blob] does. The slice is shared: do
// not modify it.
func (b *Builder) Referrers(ctx context.Context, h v1.Hash) ([]v1.Descriptor, error) {
	if err := layers.ValidateDigest(h); err != nil {
		return nil, err
	}
	if rs := b.index.referrers(h); rs != nil || len(b.index.owners(h)) > 0 {
		return rs, nil
	}
	if _, err := b.cfg.Store.Stat(ctx, h); err == nil {
		b.refresh(ctx)
	}
	return b.index.referrers(h), nil
}
