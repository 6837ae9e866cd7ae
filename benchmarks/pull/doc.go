// Package pull measures real image pulls: it serves a package set with
// `nixery serve` on 127.0.0.1, pulls a workload's images in order with the
// real Docker engine, and counts the bytes Docker actually downloaded, so
// that the benchmark harness can check its simulated pull bytes against
// them ([Agree], within 2%).
//
// # How bytes are counted
//
// Docker talks to a reverse proxy on 127.0.0.1 that forwards to the
// server and records every request with the number of response body bytes
// it wrote back: what Docker really received, whatever the server's log
// format. Requests are attributed to the image whose `docker pull` was
// running; the manifest Docker received tells the config blob from layer
// blobs.
//
// # What Docker downloads
//
// The Docker engine (docker.io with its classic image store) keeps layers
// by chain ID: a layer together with every layer below it. When it pulls
// an image it skips the longest prefix of layers whose chain it already
// has and downloads every layer after it, even a blob it holds under
// another chain. So for images pulled in order
//
//	image 1: A B C
//	image 2: A B D        downloads D            (prefix A B known)
//	image 3: A D          downloads D again      (chain A D is new)
//
// a client that skips every blob it holds would download A B C D in all,
// Docker A B C D D. [Result] reports both models computed from the
// manifests served, PerBlobBytes and ChainBytes, next to the measured
// LayerBytes, which must equal ChainBytes. A server that lists the layers
// an image shares with others first makes the two models agree.
//
// # Engines
//
// By default Run starts a private dockerd (Debian's docker.io) with an
// empty data root under the work directory, its exec root and socket in a
// short directory under /tmp, and --iptables=false --ip-masq=false
// --bridge=none; it stops it and removes its directories at the end. With
// Options.DockerHost it uses that engine instead (the CI scripts export one
// as DOCKER_HOST), checks that the first pull finds no layer already
// present, and removes the pulled images at the end.
//
// # Example
//
//	c, _ := corpus.Build(ctx, corpus.Options{Quick: true, WorkDir: dir})
//	res, err := pull.Run(ctx, pull.Options{
//		PkgsPath:   c.PkgsPath,
//		Popularity: c.Popularity,
//		Images:     [][]string{{"shell", "jq"}, {"shell", "less"}, {"nano"}},
//		WorkDir:    work,
//	})
//	// res.LayerBytes: bytes of layer blobs Docker downloaded
//	err = pull.Agree(res.LayerBytes, simulated, 0.02)
package pull
