"""harper-operator: a Kubernetes operator for Harper replication clusters."""
