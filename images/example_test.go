package images_test

import (
	"fmt"

	"github.com/nixery-go/nixery/images"
)

func ExampleParseName() {
	req, err := images.ParseName("shell/curl/bashinteractive", 0)
	if err != nil {
		panic(err)
	}
	fmt.Println(req.Packages, req.System, req.Cmd)

	req, _ = images.ParseName("arm64/jq", 0)
	fmt.Println(req.Packages, req.System)

	_, err = images.ParseName("curl/x;rm -rf", 0)
	fmt.Println(err)
	// Output:
	// [bashInteractive bashinteractive cacert coreutils curl iana-etc moreutils nano] x86_64-linux [bash]
	// [cacert iana-etc jq] aarch64-linux
	// nix: invalid package name "x;rm -rf": character ';' is not allowed
}
