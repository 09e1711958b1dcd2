//go:build tools

// Package tools makes `go mod tidy` keep the dependencies of every Kubernetes command the test bed
// builds: kube-apiserver for the control plane, and the rest for the one-node layer
// (e2e/testbed/node.py). One module pins them all, so they come from the same source and one
// `go build` with the same flags shares the compiled packages between them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
