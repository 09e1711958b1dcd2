"""A provisioned HarperCluster (spec.instances): its Kubernetes objects and scaling decisions, pure."""
