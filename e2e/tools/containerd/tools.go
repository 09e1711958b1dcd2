//go:build tools

// Package tools makes `go mod tidy` keep the dependencies of the containerd commands the one-node
// layer runs: the daemon (with its CRI plugin), the runc shim it starts per pod, and ctr for
// looking inside it by hand when debugging.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
