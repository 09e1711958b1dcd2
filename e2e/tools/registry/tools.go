//go:build tools

// Package tools makes `go mod tidy` keep the dependencies of crane, the client the test bed uses to
// assemble, push, inspect and export images (e2e/testbed/registry.py). The registry itself is the
// small program in server/, built from the same pinned go-containerregistry.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
)
