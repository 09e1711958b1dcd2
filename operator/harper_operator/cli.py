"""`harper-operator run | crds | plan | status`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _crds(args: argparse.Namespace) -> int:
    from .api.crd import crds, render

    for out in args.out or ["-"]:
        for name, manifest in crds().items():
            text = render(manifest)
            if out == "-":
                sys.stdout.write("---\n" + text)
            else:
                Path(out).mkdir(parents=True, exist_ok=True)
                (Path(out) / name).write_text(text)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .settings import OperatorSettings
    from .runner import run

    settings = OperatorSettings.from_args(args)
    return run(settings)


def _plan(args: argparse.Namespace) -> int:
    from .inspect import print_plan

    return print_plan(args.cluster, namespace=args.namespace, kubeconfig=args.kubeconfig)


def _status(args: argparse.Namespace) -> int:
    from .inspect import print_status

    return print_status(args.cluster, namespace=args.namespace, kubeconfig=args.kubeconfig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harper-operator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                     help="kubeconfig to use (default: in-cluster, else ~/.kube/config)")
    run.add_argument("--namespace", "-n", action="append", dest="namespaces",
                     default=None, help="namespace to watch (repeatable; env WATCH_NAMESPACES, comma separated); "
                                        "default: all namespaces")
    run.add_argument("--log-format", choices=["plain", "json"], default=os.environ.get("LOG_FORMAT", "plain"))
    run.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    run.add_argument("--metrics-port", type=int, default=int(os.environ.get("METRICS_PORT", "8080")),
                     help="Prometheus metrics and /healthz port; 0 turns it off")
    run.add_argument("--peering", default=os.environ.get("PEERING_NAME") or None,
                     help="Kopf peering name: replicas with the same name elect one active operator")
    run.add_argument("--priority", type=int, default=int(os.environ.get("PEERING_PRIORITY") or 0) or None,
                     help="Kopf peering priority; the highest runs, the others pause. Default: a random number per "
                          "process, because replicas of equal priority would all pause")
    run.add_argument("--min-reconcile-interval", type=float,
                     default=float(os.environ.get("MIN_RECONCILE_INTERVAL", "0")),
                     help="floor for every cluster's reconcileIntervalSeconds (seconds)")
    run.add_argument("--verify-timeout", type=float, default=float(os.environ.get("VERIFY_TIMEOUT", "30")),
                     help="how long to wait for Harper to show a write in cluster_status")
    run.add_argument("--cluster-domain", default=os.environ.get("CLUSTER_DOMAIN", "cluster.local"),
                     help="the Kubernetes cluster's DNS domain, in the pod names of provisioned Harper")
    run.add_argument("--no-provisioning", dest="provisioning", action="store_false",
                     default=os.environ.get("PROVISIONING", "true").lower() not in ("false", "0", "no"),
                     help="serve only clusters of Harper that runs elsewhere: no pod watch, and a HarperCluster "
                          "with spec.instances is Stalled (for RBAC without workload rights)")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="print or write the CRDs generated from the models")
    crds.add_argument("--out", action="append", help="folder to write into (repeatable); default: stdout")
    crds.set_defaults(func=_crds)

    for name, func, text in (("plan", _plan, "print the operations the operator would run now (no writes)"),
                             ("status", _status, "print the replication mesh of a cluster as a table")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("cluster", help="HarperCluster name")
        cmd.add_argument("--namespace", "-n", default="default")
        cmd.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
        cmd.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
