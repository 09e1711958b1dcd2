// Two tiny static programs the one-node layer packs into images with Registry.push_binary (see
// e2e/testbed/node.py): pause, the pod sandbox's placeholder process, and probe, the test image.
// Standard library only, so nothing to pin but the language version.
module harper-operator/e2e/tools/node-images

go 1.26.0
