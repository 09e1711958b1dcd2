//go:build tools

// Package tools makes `go mod tidy` keep helm's dependencies.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
