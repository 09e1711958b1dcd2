"""The fault matrix (issue 9): drive a cluster through its lifecycle on the real test bed, inject a fault at a
seeded random moment of each reconcile, and check Harper itself afterwards.

- `truth.py`: what Harper and the resources say after a fault (records, sockets, data, conditions).
- `faults.py`: the faults, each a small class with `inject(world, rng)`.
- `lifecycle.py`: the loopback test bed's world and the lifecycle's steps.
- `matrix.py`: runs a schedule of (step, fault) pairs and folds the rows into the table.

`bench/faults.py` runs the whole matrix (each fault at least five times); `e2e/scenarios/test_faults.py` runs one
round of each fault in `make test`; `e2e/pods/test_faults_on_node.py` does the same for the node layer's own
faults (a Harper pod deleted, the kubelet restarted).
"""
