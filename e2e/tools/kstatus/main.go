// Command kstatus prints the status that kstatus computes for Kubernetes objects: the rules in
// sigs.k8s.io/cli-utils/pkg/kstatus/status, which Flux (kustomize-controller's health checks) and
// kpt/cli-utils apply use to decide whether an applied object has become ready.
//
// It reads one object, or a List of them, as JSON on stdin (what `kubectl get -o json` prints) and
// prints one line per object:
//
//	<kind>/<name> <Status> <message>
//
// where Status is one of InProgress, Failed, Current, Terminating, NotFound, Unknown. It exits 1
// when the input cannot be read or a status cannot be computed, with the reason on stderr.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kubectl get KIND [NAME] -o json | kstatus")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	objects, err := decode(data)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	for _, obj := range objects {
		result, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", obj.GetKind(), obj.GetName(), err)
		}
		line := fmt.Sprintf("%s/%s %s %s", obj.GetKind(), obj.GetName(), result.Status, oneLine(result.Message))
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	return nil
}

// decode reads one object or a List. The unstructured JSON scheme keeps integers as int64, which
// kstatus needs: it reads metadata.generation and status.observedGeneration with NestedInt64, and
// plain encoding/json would give it float64s it refuses.
func decode(data []byte) ([]*unstructured.Unstructured, error) {
	obj, _, err := unstructured.UnstructuredJSONScheme.Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding stdin: %w", err)
	}
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		return []*unstructured.Unstructured{o}, nil
	case *unstructured.UnstructuredList:
		items := make([]*unstructured.Unstructured, 0, len(o.Items))
		for i := range o.Items {
			items = append(items, &o.Items[i])
		}
		return items, nil
	default:
		return nil, fmt.Errorf("decoding stdin: unexpected %T", obj)
	}
}

// oneLine keeps a multi-line message on its object's line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
