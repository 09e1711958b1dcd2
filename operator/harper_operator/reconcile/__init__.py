"""The pure reconcile core: desired/observed topology, plan(), diagnose(), conditions. No I/O, no clock."""

from .conditions import condition, conditions, from_round
from .plan import (AddNode, ConfigureCluster, DeleteRoutes, Operation, Problem, RemoveNode, Restart, SetRoutes,
                   UpdateNode, choose_seed, diagnose, pending_restart, plan)
from .topology import (DesiredCluster, DesiredNode, ObservedCluster, ObservedNode, PeerRecord, Route, Subscription,
                       normalize, observed_node_from_harper, pair_subscriptions, peer_record_from_harper, reverse)

__all__ = [
    "AddNode", "ConfigureCluster", "DeleteRoutes", "DesiredCluster", "DesiredNode", "ObservedCluster", "ObservedNode",
    "Operation", "PeerRecord", "Problem", "RemoveNode", "Restart", "Route", "SetRoutes", "Subscription", "UpdateNode",
    "choose_seed", "condition", "conditions", "diagnose", "from_round", "normalize", "observed_node_from_harper",
    "pair_subscriptions", "peer_record_from_harper", "pending_restart", "plan", "reverse",
]
