"""The real test bed: etcd + kube-apiserver + Harper nodes as local processes (see README.md, "Two commands").

    with start_testbed(nodes=3) as bed:  # bed.tools, bed.control_plane, bed.fleet
        ...
"""

from .harper import HarperFleet, HarperNode
from .kube import ControlPlane
from .sandbox import Testbed, start_testbed
from .tools import Tools, ToolBuildError, ensure_tools

__all__ = ["ControlPlane", "HarperFleet", "HarperNode", "Testbed", "ToolBuildError", "Tools", "ensure_tools",
           "start_testbed"]
