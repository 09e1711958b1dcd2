"""The resources' schema: pydantic models that generate the CRDs and parse what Kubernetes sends."""

from .cluster import PAUSE_ANNOTATION, HarperCluster, HarperClusterSpec, HarperClusterStatus, MemberStatus, Route
from .common import API_VERSION, GROUP, VERSION, Condition
from .node import (Certificate, HarperNode, HarperNodeSpec, HarperNodeStatus, PeerStatus, SocketStatus,
                   Subscription)

__all__ = ["API_VERSION", "GROUP", "VERSION", "PAUSE_ANNOTATION", "Certificate", "Condition", "HarperCluster",
           "HarperClusterSpec", "HarperClusterStatus", "HarperNode", "HarperNodeSpec", "HarperNodeStatus",
           "MemberStatus", "PeerStatus", "Route", "SocketStatus", "Subscription"]
