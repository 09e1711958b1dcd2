"""The pure reconcile core: desired/observed topology, plan(), diagnose(), the restart budget, conditions.

No I/O, no clock.
"""

from .conditions import condition, conditions
from .plan import (AddNode, DeleteRoutes, Operation, RemoveNode, Restart, SetRoutes, UpdateNode, choose_seed, diagnose,
                   pending_restart, plan)
from .problems import Problem
from .restarts import RestartLedger, admit, restarts_for_pending
from .topology import (DesiredCluster, DesiredNode, ObservedCluster, ObservedNode, PeerRecord, Route, Subscription,
                       normalize, pair_subscriptions, reverse, url_key)

__all__ = [
    "AddNode", "DeleteRoutes", "DesiredCluster", "DesiredNode", "ObservedCluster", "ObservedNode", "Operation",
    "PeerRecord", "Problem", "RemoveNode", "Restart", "RestartLedger", "Route", "SetRoutes", "Subscription",
    "UpdateNode", "admit", "choose_seed", "condition", "conditions", "diagnose", "normalize",
    "pair_subscriptions", "pending_restart", "plan", "restarts_for_pending", "reverse", "url_key",
]
