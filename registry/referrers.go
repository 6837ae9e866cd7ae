package registry

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// mediaTypeIndex is the media type of the referrers list.
const mediaTypeIndex = "application/vnd.oci.image.index.v1+json"

// serveReferrers answers GET /v2/<name>/referrers/<digest>: an OCI image
// index of the manifests whose subject is digest, empty when there are
// none (also for a digest the registry never served, as the distribution
// specification asks). ?artifactType= keeps those of that artifact type
// and says so in OCI-Filters-Applied.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, ref string) error {
	h, err := parseDigest(ref)
	if err != nil {
		return err
	}
	ds, err := r.referrers.Referrers(req.Context(), h)
	if err != nil {
		return unknown(err, CodeManifestUnknown, "manifest", ref)
	}
	hd := w.Header()
	if req.URL.RawQuery != "" {
		if at, ok := req.URL.Query()["artifactType"]; ok && len(at) > 0 {
			ds = slices.DeleteFunc(slices.Clone(ds), func(d v1.Descriptor) bool { return d.ArtifactType != at[0] })
			hd["Oci-Filters-Applied"] = filtersApplied
		}
	}
	buf := indexBuffers.Get().(*[]byte)
	body := appendIndex((*buf)[:0], ds)
	writeIndex(w, req, body, "")
	*buf = body
	indexBuffers.Put(buf)
	return nil
}

// filtersApplied is the OCI-Filters-Applied header of a filtered list.
var filtersApplied = []string{"artifactType"}

// indexBuffers are the buffers referrers lists are rendered into.
var indexBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// isReferrersTag reports whether a tag is the referrers tag schema's tag of
// a digest: sha256-<64 lower-case hex digits>.
func isReferrersTag(tag string) bool {
	hexPart, ok := strings.CutPrefix(tag, "sha256-")
	if !ok || len(hexPart) != 64 {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		if c := hexPart[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// serveReferrersTag answers the referrers tag schema (the fallback for
// clients that predate the referrers API): the manifest tagged
// sha256-<hex> is the index of the referrers of sha256:<hex>, and a
// digest without referrers has no such tag.
func (r *Registry) serveReferrersTag(w http.ResponseWriter, req *http.Request, tag string) error {
	ref := "sha256:" + strings.TrimPrefix(tag, "sha256-")
	h, err := parseDigest(ref)
	if err != nil {
		return err
	}
	ds, err := r.referrers.Referrers(req.Context(), h)
	if err != nil {
		return unknown(err, CodeManifestUnknown, "manifest", ref)
	}
	if len(ds) == 0 {
		return newError(CodeManifestUnknown, "manifest %s has no referrers", ref)
	}
	body := appendIndex(nil, ds)
	d, _, _ := v1.SHA256(bytes.NewReader(body))
	writeIndex(w, req, body, d.String())
	return nil
}

// writeIndex writes an image index with its headers: with its digest as
// Docker-Content-Digest when served as a manifest (the tag schema); the
// referrers API needs none.
func writeIndex(w http.ResponseWriter, req *http.Request, body []byte, digest string) {
	v := [...]string{mediaTypeIndex, strconv.Itoa(len(body)), digest}
	hd := w.Header()
	hd["Content-Type"] = v[0:1:1]
	hd["Content-Length"] = v[1:2:2]
	if digest != "" {
		hd["Docker-Content-Digest"] = v[2:3:3]
	}
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(body)
	}
}

// appendIndex appends the JSON of an OCI image index of ds, each
// descriptor with its media type, digest, size, artifact type and
// annotations (sorted by key, so that the bytes are deterministic).
func appendIndex(b []byte, ds []v1.Descriptor) []byte {
	b = append(b, `{"schemaVersion":2,"mediaType":"`+mediaTypeIndex+`","manifests":[`...)
	for i, d := range ds {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"mediaType":`...)
		b = appendJSONString(b, string(d.MediaType))
		b = append(b, `,"digest":`...)
		b = appendJSONString(b, d.Digest.Algorithm)
		b = append(b[:len(b)-1], ':')
		b = append(b, d.Digest.Hex...) // hex digits, checked by whoever made d
		b = append(b, '"')
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, d.Size, 10)
		if d.ArtifactType != "" {
			b = append(b, `,"artifactType":`...)
			b = appendJSONString(b, d.ArtifactType)
		}
		if len(d.Annotations) > 0 {
			var one [1]string
			keys := one[:0]
			for k := range d.Annotations {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			b = append(b, `,"annotations":{`...)
			for j, k := range keys {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, ':')
				b = appendJSONString(b, d.Annotations[k])
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string, escaping quotes,
// backslashes and control characters (and invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
	}
	if plain {
		b = append(b, s...)
		return append(b, '"')
	}
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', byte(c))
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = utf8.AppendRune(b, c)
		}
	}
	return append(b, '"')
}
