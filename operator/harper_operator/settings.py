"""Operator settings, from flags and environment (see `harper-operator run --help`)."""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorSettings:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    log_format: str = "plain"
    log_level: str = "INFO"
    metrics_port: int = 8080
    peering: str | None = None  # None: standalone (one replica)
    # Kopf pauses every operator that sees a peer of equal priority: replicas must differ, so each draws its own.
    priority: int = field(default_factory=lambda: random.randint(1, 2**30))
    min_reconcile_interval: float = 0.0
    verify_timeout: float = 30.0
    # Rounds running at once, over every cluster (0: no limit). 250 clusters' first rounds at once took the process
    # to 370 MiB, near the chart's 384Mi limit; a bound keeps the peak down (bench/scale.py, docs/scale.md).
    max_concurrent_rounds: int = 32
    cluster_domain: str = "cluster.local"
    provisioning: bool = True  # HarperClusters with spec.instances; off: the chart granted no workload rights

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "OperatorSettings":
        namespaces = args.namespaces or [n for n in os.environ.get("WATCH_NAMESPACES", "").split(",") if n.strip()]
        return cls(kubeconfig=args.kubeconfig, namespaces=tuple(n.strip() for n in namespaces),
                   log_format=args.log_format, log_level=args.log_level.upper(), metrics_port=args.metrics_port,
                   peering=args.peering, **({"priority": args.priority} if args.priority else {}),
                   min_reconcile_interval=args.min_reconcile_interval,
                   verify_timeout=args.verify_timeout,
                   max_concurrent_rounds=getattr(args, "max_concurrent_rounds", 32),
                   cluster_domain=getattr(args, "cluster_domain", None) or "cluster.local",
                   provisioning=getattr(args, "provisioning", True))


# The handlers read the settings of the running process from here (Kopf handlers take no constructor).
current = OperatorSettings()
