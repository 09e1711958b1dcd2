"""A SIMULATOR of many Harper nodes in one process, for the scale benchmark only.

It answers Harper's clustering operations from an in-memory model (harper_model.py) so one operator can be
measured against 1,000 nodes; it is not Harper and never replaces real harperdb in e2e scenarios. Run it with
`python -m e2e.simulator` (prints the nodes as one JSON line), in-process with `Simulator`, or as a child process
with `SimulatorProcess`.
"""

from .process import SimulatorProcess
from .server import Simulator, node_address

__all__ = ["Simulator", "SimulatorProcess", "node_address"]
