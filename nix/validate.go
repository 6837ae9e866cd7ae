package nix

import "strings"

// MaxNameLength bounds one package name, dots included.
const MaxNameLength = 128

// ValidateName checks name against the grammar of a (possibly nested)
// attribute path: components separated by single dots, each starting with a
// letter, digit or underscore and continuing with letters, digits, '_', '-'
// or '\”. Only ASCII is accepted. Anything else, including every piece of
// Nix syntax, is an [*InvalidNameError] before Nix is ever run.
func ValidateName(name string) error {
	bad := func(reason string) error { return &InvalidNameError{Name: name, Reason: reason} }
	switch {
	case name == "":
		return bad("empty name")
	case len(name) > MaxNameLength:
		return bad("longer than 128 characters")
	}
	for _, comp := range strings.Split(name, ".") {
		if comp == "" {
			return bad("empty attribute path component")
		}
		for i := 0; i < len(comp); i++ {
			c := comp[i]
			letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
			if letter || i > 0 && (c == '-' || c == '\'') {
				continue
			}
			if c >= 0x80 {
				return bad("only ASCII letters, digits, '_', '-' and '\\'' are allowed")
			}
			return bad("character " + quoteByte(c) + " is not allowed")
		}
	}
	return nil
}

func quoteByte(c byte) string {
	if c < 0x20 || c == 0x7f {
		return "0x" + string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])
	}
	return "'" + string(c) + "'"
}
