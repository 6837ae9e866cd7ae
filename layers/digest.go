package layers

import (
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrInvalidDigest is returned (wrapped) for a digest that is not
// "sha256:" followed by 64 lowercase hexadecimal digits.
var ErrInvalidDigest = errors.New("layers: invalid digest")

// ParseDigest parses s as a sha256 digest, "sha256:" followed by exactly 64
// lowercase hexadecimal digits. It is stricter than [v1.NewHash], which
// accepts uppercase digits: a digest names a file in a [BlobStore], so it must
// have one spelling and never contain a path separator or "..".
func ParseDigest(s string) (v1.Hash, error) {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return v1.Hash{}, fmt.Errorf("%w: %q: want sha256:<64 lowercase hex digits>", ErrInvalidDigest, truncate(s))
	}
	h := v1.Hash{Algorithm: "sha256", Hex: hex}
	if err := ValidateDigest(h); err != nil {
		return v1.Hash{}, err
	}
	return h, nil
}

// ValidateDigest reports whether h is a sha256 digest with 64 lowercase
// hexadecimal digits, returning an error wrapping [ErrInvalidDigest] if not.
func ValidateDigest(h v1.Hash) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("%w: algorithm %q: only sha256 is supported", ErrInvalidDigest, truncate(h.Algorithm))
	}
	if len(h.Hex) != 64 {
		return fmt.Errorf("%w: %d hex digits, want 64", ErrInvalidDigest, len(h.Hex))
	}
	for i := 0; i < len(h.Hex); i++ {
		if c := h.Hex[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%w: %q is not lowercase hexadecimal", ErrInvalidDigest, truncate(h.Hex))
		}
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
