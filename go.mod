module github.com/nixery-go/nixery

go 1.26

require (
	github.com/google/go-containerregistry v0.22.1
	github.com/klauspost/compress v1.20.4
	github.com/opencontainers/image-spec v1.1.1
)

require github.com/opencontainers/go-digest v1.0.0 // indirect
