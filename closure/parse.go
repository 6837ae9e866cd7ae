package closure

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("closure: cannot parse Nix output")

// pathInfo is one entry of `nix path-info --json` in any Nix version.
type pathInfo struct {
	Path       string   `json:"path"`
	NarSize    *int64   `json:"narSize"`
	NarHash    string   `json:"narHash"`
	References []string `json:"references"`
	Valid      *bool    `json:"valid"`
}

// ParsePathInfo parses the output of `nix path-info --json --recursive`.
// Nix up to 2.18 prints an array of objects that each carry a "path" field;
// later versions print an object keyed by store path. Both are accepted.
// A path Nix reports as invalid (null, or "valid": false) is an error, since
// its size and references are unknown. The result is sorted by store path.
func ParsePathInfo(data []byte) ([]Path, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrSyntax)
	}
	var infos []pathInfo
	switch data[0] {
	case '[':
		if err := json.Unmarshal(data, &infos); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
	case '{':
		var m map[string]*pathInfo
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		for p, info := range m {
			if info == nil {
				return nil, fmt.Errorf("%w: %s is not a valid store path in the store", ErrSyntax, p)
			}
			if info.Path != "" && info.Path != p {
				return nil, fmt.Errorf("%w: key %s holds path %s", ErrSyntax, p, info.Path)
			}
			info.Path = p
			infos = append(infos, *info)
		}
	default:
		return nil, fmt.Errorf("%w: expected a JSON array or object", ErrSyntax)
	}
	return convert(infos)
}

// ParseReferencesGraph parses the JSON that Nix writes for a derivation with
// __structuredAttrs and exportReferencesGraph: either the list of entries
// itself or an object holding one such list (the attribute's name is the key,
// as in .attrs.json). Entries carry path, narSize, narHash and references.
func ParseReferencesGraph(data []byte) ([]Path, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrSyntax)
	}
	if data[0] == '{' {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		var lists []string
		for k, v := range m {
			if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '[' {
				lists = append(lists, k)
			}
		}
		if len(lists) != 1 {
			return nil, fmt.Errorf("%w: expected exactly one graph list, found %d", ErrSyntax, len(lists))
		}
		data = m[lists[0]]
	}
	var infos []pathInfo
	if err := json.Unmarshal(data, &infos); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return convert(infos)
}

func convert(infos []pathInfo) ([]Path, error) {
	out := make([]Path, 0, len(infos))
	for _, in := range infos {
		if in.Valid != nil && !*in.Valid {
			return nil, fmt.Errorf("%w: %s is not a valid store path in the store", ErrSyntax, in.Path)
		}
		if !ValidStorePath(in.Path) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidPath, in.Path)
		}
		if in.NarSize == nil {
			return nil, fmt.Errorf("%w: %s has no narSize", ErrSyntax, in.Path)
		}
		if *in.NarSize < 0 {
			return nil, fmt.Errorf("%w: %s", ErrNegativeNarSize, in.Path)
		}
		for _, r := range in.References {
			if !ValidStorePath(r) {
				return nil, fmt.Errorf("%w: %s references %q", ErrInvalidPath, in.Path, r)
			}
		}
		refs := append([]string{}, in.References...)
		sort.Strings(refs)
		out = append(out, Path{Path: in.Path, NarSize: *in.NarSize, NarHash: in.NarHash, References: refs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
