//go:build tools

// Package tools makes `go mod tidy` keep promtool's dependencies.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
