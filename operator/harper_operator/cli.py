"""`harper-operator run | crds | plan | status | certificates`, and the kubectl plugin `kubectl harper status | plan |
certificates | crds`.

Exit codes of status and plan (docs/cli.md): 0 ok (status: the cluster is Ready), 1 a usage or API error,
2 not found, 3 the cluster is not Ready (status).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version as _dist_version
from pathlib import Path

USAGE_ERROR = 1  # kubectl's code for a bad command line; 2 means "not found" here


def version() -> str:
    try:
        return _dist_version("harper-operator")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, with kubectl's exit code 1 for a bad command line (argparse's own 2 means "not found" here)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _crds(args: argparse.Namespace) -> int:
    from .api.crd import chart_template, crds, render

    for out in args.out or ([] if getattr(args, "chart_out", None) else ["-"]):
        for name, manifest in crds().items():
            text = render(manifest)
            if out == "-":
                sys.stdout.write("---\n" + text)
            else:
                Path(out).mkdir(parents=True, exist_ok=True)
                (Path(out) / name).write_text(text)
    for out in getattr(args, "chart_out", None) or []:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name, manifest in crds().items():
            (Path(out) / name).write_text(chart_template(name, manifest))
    return 0


def _run(args: argparse.Namespace) -> int:
    from .settings import OperatorSettings
    from .runner import run

    settings = OperatorSettings.from_args(args)
    return run(settings)


def _options(args: argparse.Namespace):
    from .inspect import Options

    return Options(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace, output=args.output,
                   via=args.via, all_namespaces=getattr(args, "all_namespaces", False),
                   cluster_domain=args.cluster_domain, ca_bundle=getattr(args, "ca_bundle", False))


def _inspecting(command):
    def run(args: argparse.Namespace) -> int:
        from .inspect import CliError

        try:
            return command(args)
        except CliError as e:
            sys.stderr.write(f"error: {e}\n")
            return e.code
    return run


@_inspecting
def _plan(args: argparse.Namespace) -> int:
    from .inspect import plan

    return plan(args.cluster, _options(args))


@_inspecting
def _certificates(args: argparse.Namespace) -> int:
    from .inspect import certificates

    return certificates(args.cluster, _options(args))


@_inspecting
def _status(args: argparse.Namespace) -> int:
    from .inspect import status

    return status(args.cluster, _options(args))


def _connection_flags(p: argparse.ArgumentParser, *, given_only: bool) -> None:
    """kubectl's flags. given_only: set only when given on this (sub)command, so `kubectl harper -n x status` and
    `kubectl harper status -n x` both work."""
    def d(value):
        return argparse.SUPPRESS if given_only else value

    p.add_argument("--kubeconfig", default=d(None), help="kubeconfig file (default: $KUBECONFIG, in a pod its "
                                                         "service account, else ~/.kube/config)")
    p.add_argument("--context", default=d(None), help="kubeconfig context (default: the current one)")
    p.add_argument("-n", "--namespace", default=d(None), help="namespace (default: the context's, else default)")
    p.add_argument("-o", "--output", choices=["table", "json", "yaml"], default=d("table"), help="output format")


def _inspect_commands(sub, *, given_only: bool) -> None:
    DIRECT, LIVE = "direct", "live"  # inspect's names (not imported here: the parser stays light)
    status = sub.add_parser("status", help="a cluster's replication mesh from its status (--live: from Harper); "
                                           "no name: the namespace's clusters",
                            description="Without --live or --direct: the HarperCluster's and its HarperNodes' "
                                        ".status, as the operator last wrote it (no Harper call, no Secret read). "
                                        "Exit code 3 when the cluster is not Ready.")
    status.add_argument("cluster", nargs="?", help="HarperCluster name (none: list the clusters)")
    status.add_argument("-A", "--all-namespaces", action="store_true", help="list the clusters of every namespace")
    plan = sub.add_parser("plan", help="print the operations the operator would run now (a dry run; no writes)",
                          description="Reads Harper through the API server's proxy only (a member it cannot "
                                      "proxy to is refused, sent nothing); --direct calls every operationsUrl from "
                                      "this machine.")
    plan.add_argument("cluster", help="HarperCluster name")
    certs = sub.add_parser("certificates", help="a cluster's certificates: a provisioned cluster's pods', or an "
                                                "external cluster's members' own",
                           description="A provisioned cluster: reads the Secret NAME-tls with your credentials (your "
                                       "RBAC decides; no Harper call): each pod's names, issuer, expiry, and whether "
                                       "the CA bundle the pods trust verifies it. An external cluster: asks each "
                                       "member's Harper for its certificates (list_certificates, through the API "
                                       "server's proxy unless --direct) and shows the one it uses, its issuer, expiry "
                                       "and whether the CA the operator trusts verifies it. Exit code 3 when one "
                                       "needs a look.")
    certs.add_argument("cluster", help="HarperCluster name")
    certs.add_argument("--ca-bundle", action="store_true",
                       help="an external cluster: print only the PEMs of the authorities that signed the members' "
                            "certificates (for a Secret that spec.tls.caSecretRef names)")
    for cmd, func, default in ((status, _status, None), (plan, _plan, LIVE), (certs, _certificates, LIVE)):
        _connection_flags(cmd, given_only=given_only)
        how = cmd.add_mutually_exclusive_group()
        how.add_argument("--live", dest="via", action="store_const", const=LIVE, default=default,
                         help="ask Harper now, only through the API server's service/pod proxy (your RBAC decides)")
        how.add_argument("--direct", dest="via", action="store_const", const=DIRECT,
                         help="ask Harper now by calling every operationsUrl from this machine, Harper's credentials "
                              "included (in-cluster, or where those names resolve)")
        cmd.add_argument("--cluster-domain", default=os.environ.get("CLUSTER_DOMAIN", "cluster.local"),
                         help="the cluster's DNS domain, as in <svc>.<ns>.svc.<domain> (default cluster.local)")
        cmd.set_defaults(func=func)
    certs.set_defaults(all_namespaces=False)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harper-operator", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
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
    run.add_argument("--max-concurrent-rounds", type=int,
                     default=int(os.environ.get("MAX_CONCURRENT_ROUNDS", "32")),
                     help="reconcile rounds running at once over every cluster (0: no limit); a round waiting for a "
                          "slot runs as soon as one is free")
    run.add_argument("--cluster-domain", default=os.environ.get("CLUSTER_DOMAIN", "cluster.local"),
                     help="the Kubernetes cluster's DNS domain, in the pod names of provisioned Harper")
    run.add_argument("--no-provisioning", dest="provisioning", action="store_false",
                     default=os.environ.get("PROVISIONING", "true").lower() not in ("false", "0", "no"),
                     help="serve only clusters of Harper that runs elsewhere: no pod watch, and a HarperCluster "
                          "with spec.instances is Stalled (for RBAC without workload rights)")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="print or write the CRDs generated from the models")
    crds.add_argument("--out", action="append", help="folder to write into (repeatable); default: stdout")
    crds.add_argument("--chart-out", action="append",
                      help="folder to write the CRDs into as Helm chart templates (repeatable), e.g. "
                           "helm/harper-operator/templates/crds: the chart's labels, helm.sh/resource-policy: keep, "
                           "behind the value crds.create")
    crds.set_defaults(func=_crds)

    _inspect_commands(sub, given_only=False)
    return p


def kubectl_parser() -> argparse.ArgumentParser:
    """`kubectl harper ...`: kubectl runs the executable kubectl-harper found on PATH (krew's naming)."""
    p = _Parser(prog="kubectl harper", description="Inspect Harper clusters run by harper-operator. Exit codes: "
                                                   "0 ok, 1 usage or API error, 2 not found, 3 not Ready.")
    p.add_argument("--version", action="version", version=f"kubectl-harper {version()}")
    _connection_flags(p, given_only=False)
    sub = p.add_subparsers(dest="command", required=True)
    _inspect_commands(sub, given_only=True)
    crds = sub.add_parser("crds", help="print the CRDs generated from the models")
    crds.set_defaults(func=_crds, out=None, chart_out=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def kubectl_main(argv: list[str] | None = None) -> int:
    args = kubectl_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
