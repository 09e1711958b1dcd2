"""The resources' schema: pydantic models that generate the CRDs and parse what Kubernetes sends."""

from .cluster import (PAUSE_ANNOTATION, RETAINED_ANNOTATION, HarperCluster, HarperClusterSpec, HarperClusterStatus,
                      MemberStatus, OwedRestart, RestartRecord, Route)
from .common import API_VERSION, GROUP, READABLE_LABEL, VERSION, Condition
from .node import (LEAVE_WITHOUT_PROOF_ANNOTATION, Certificate, HarperNode, HarperNodeSpec, HarperNodeStatus, PeerStatus, SocketStatus,
                   Subscription)

__all__ = ["API_VERSION", "GROUP", "VERSION", "PAUSE_ANNOTATION", "LEAVE_WITHOUT_PROOF_ANNOTATION", "READABLE_LABEL", "RETAINED_ANNOTATION", "OwedRestart", "RestartRecord", "Certificate", "Condition", "HarperCluster",
           "HarperClusterSpec", "HarperClusterStatus", "HarperNode", "HarperNodeSpec", "HarperNodeStatus",
           "MemberStatus", "PeerStatus", "Route", "SocketStatus", "Subscription"]
