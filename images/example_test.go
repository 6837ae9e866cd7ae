package registry_test

import (
	"fmt"

	"github.com/nixery-go/nixery/registry"
)

func ExampleParseName() {
	img, err := registry.ParseName("shell/curl/bashinteractive", 0, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println(img.Packages, img.System, img.Cmd)

	img, _ = registry.ParseName("arm64/jq", 0, 0)
	fmt.Println(img.Packages, img.System)

	_, err = registry.ParseName("curl/x;rm -rf", 0, 0)
	fmt.Println(err)
	// Output:
	// [bashInteractive bashinteractive cacert coreutils curl iana-etc moreutils nano] x86_64-linux [bash]
	// [cacert iana-etc jq] aarch64-linux
	// NAME_INVALID: invalid component "x;rm -rf": character ';' is not allowed
}
