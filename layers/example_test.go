package layers_test

import (
	"errors"
	"fmt"

	"github.com/nixery-go/nixery/layers"
)

func ExampleParseDigest() {
	h, err := layers.ParseDigest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
	fmt.Println(h.Hex[:12], err)
	for _, s := range []string{
		"sha256:../../etc/passwd",
		"sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
		"sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce",
	} {
		_, err := layers.ParseDigest(s)
		fmt.Println(errors.Is(err, layers.ErrInvalidDigest))
	}
	// Output:
	// e3b0c44298fc <nil>
	// true
	// true
	// true
}
