"""The commands themselves: `status`, `plan` and `certificates`, from reading to printing."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TextIO

from ..controller.loop import intent
from ..api.cluster import generated_ca_secret_name, generated_tls_secret_name
from .certificates import authority_bundle, certificate_rows, certificate_table, member_rows, member_table
from .errors import NOT_READY, OK, CliError, NotFound
from .kubeapi import connect, get_cluster, list_clusters, nodes_of, read_membership, read_secret, spec_of
from .render import (clusters_table, cluster_row, dump, live_document, live_rows, plan_document, plan_lines,
                     status_document, status_rows, table)
from .routing import LIVE
from .transports import look, read_certificates


@dataclass
class Options:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None  # None: the context's
    output: str = "table"
    via: str | None = None  # None: status from .status (plan: LIVE); else DIRECT or LIVE
    all_namespaces: bool = False
    cluster_domain: str = "cluster.local"
    ca_bundle: bool = False  # certificates: print only the members' authorities (PEM)
    err: TextIO | None = field(default=None, repr=False)  # None: sys.stderr


def status(cluster: str | None, opts: Options, out: TextIO | None = None) -> int:
    """One cluster's mesh, or a list of clusters (no name: the namespace's; -A: every namespace's). Exit code 3
    when a cluster shown is not Ready."""
    out = out or sys.stdout
    err = opts.err or sys.stderr
    if cluster and opts.all_namespaces:
        raise CliError("a cluster name and --all-namespaces exclude each other")
    if opts.via is not None and not cluster:
        raise CliError("--live and --direct need a cluster name")
    kube = connect(opts.kubeconfig, opts.context)
    namespace = opts.namespace or kube.namespace
    if not cluster:
        rows = [cluster_row(c) for c in list_clusters(kube, None if opts.all_namespaces else namespace)]
        if opts.output != "table":
            dump({"items": rows}, opts.output, out)
        elif not rows:
            err.write("No HarperClusters found" + ("" if opts.all_namespaces else f" in {namespace}") + "\n")
        else:
            table(clusters_table(rows, opts.all_namespaces), out)
        return NOT_READY if any(r["ready"] != "True" for r in rows) else OK
    body = get_cluster(kube, namespace, cluster)
    nodes = nodes_of(kube, body)
    if opts.via is None:
        doc = status_document(body, nodes)
        rows = status_rows(doc)
    else:
        m = read_membership(kube, body, spec_of(body), nodes, opts.cluster_domain)
        sights, ways = asyncio.run(look(kube, m, opts.via, opts.cluster_domain))
        doc = live_document(body, m, sights, ways)
        rows = live_rows(doc)
    if opts.output == "table":
        table(rows, out)
    else:
        dump(doc, opts.output, out)
    if doc["ready"] != "True":
        err.write(f"HarperCluster {namespace}/{cluster} is not Ready: {doc['reason'] or doc['ready']}"
                  f"{': ' + doc['message'] if doc['message'] else ''}\n")
        return NOT_READY
    return OK


def plan(cluster: str, opts: Options, out: TextIO | None = None) -> int:
    """A dry run of one reconcile: the operations, one per line, or 'nothing to do'. Writes nothing."""
    out = out or sys.stdout
    kube = connect(opts.kubeconfig, opts.context)
    namespace = opts.namespace or kube.namespace
    body = get_cluster(kube, namespace, cluster)
    spec = spec_of(body)
    m = read_membership(kube, body, spec, nodes_of(kube, body), opts.cluster_domain)
    sights, ways = asyncio.run(look(kube, m, opts.via or LIVE, opts.cluster_domain))
    doc = plan_document(body, m, sights, ways, intent(m, sights, body, spec))
    if opts.output == "table":
        out.write("".join(line + "\n" for line in plan_lines(doc)))
    else:
        dump(doc, opts.output, out)
    return OK


def certificates(cluster: str, opts: Options, out: TextIO | None = None) -> int:
    """The certificates the operator issued a provisioned cluster's pods (Secret NAME-tls, read with the user's
    credentials): names, issuer, expiry, and whether the CA bundle the pods trust verifies each. Exit code 3 when one
    is not verified, has a key that is not its own, or is due for renewal. An external cluster's members: see
    _member_certificates."""
    out = out or sys.stdout
    err = opts.err or sys.stderr
    kube = connect(opts.kubeconfig, opts.context)
    namespace = opts.namespace or kube.namespace
    body = get_cluster(kube, namespace, cluster)
    spec = spec_of(body)
    if not spec.issues_certificates:
        return _member_certificates(kube, body, spec, opts, out, err)
    if opts.ca_bundle:
        raise CliError(f"HarperCluster {namespace}/{cluster} trusts the operator's own CA (Secret "
                       f"{generated_ca_secret_name(cluster)}, or spec.tls.caSecretRef): --ca-bundle is for an external "
                       "cluster's members")
    name = generated_tls_secret_name(cluster)
    found = read_secret(kube, namespace, name)
    if found is None:
        raise NotFound(f"Secret {namespace}/{name} not found: the operator has not issued the pods' certificates "
                       "yet (see kubectl harper status)")
    if not found.readable:
        raise CliError(found.error or f"Secret {namespace}/{name} is not labelled harperoperator.dev/readable=true")
    rows = certificate_rows(found.data, datetime.now(timezone.utc))
    if opts.output == "table":
        table(certificate_table(rows), out) if rows else err.write(f"No certificates in Secret {namespace}/{name}\n")
    else:
        dump({"secret": name, "certificates": rows}, opts.output, out)
    bad = [r["pod"] for r in rows if not (r.get("signedByTrustedCA") and r.get("keyMatches")) or r.get("renewDue")]
    if bad:
        err.write(f"certificates to look at: {', '.join(bad)} (not verified by the trusted CA, a key that is not "
                  "their own, or due for renewal: the operator issues them again at its next round)\n")
        return NOT_READY
    return OK


def _member_certificates(kube, body, spec, opts: Options, out: TextIO, err: TextIO) -> int:
    """An external cluster's members: the certificate each Harper lists as its own, read with list_certificates
    through the API server (or --direct), and whether the CA the operator trusts for it verifies it. --ca-bundle
    prints only the PEMs of the authorities that signed them, for a Secret that spec.tls.caSecretRef names."""
    m = read_membership(kube, body, spec, nodes_of(kube, body), opts.cluster_domain)
    found = asyncio.run(read_certificates(kube, m, opts.via or LIVE, opts.cluster_domain))
    names = {x.hostname: ((x.body.get("status") or {}).get("nodeName") or x.hostname) for x in m.members}
    where = f"HarperCluster {body['metadata'].get('namespace')}/{body['metadata']['name']}"
    if opts.ca_bundle:
        pem = authority_bundle(found, names)
        if not pem:
            raise CliError(f"{where}: no member listed the authority that signed its certificate")
        out.write(pem)
        return OK
    trusted = {x.hostname: x.access.ca_pem if x.access else None for x in m.members}
    rows = member_rows(found, names, trusted, datetime.now(timezone.utc))
    if opts.output == "table":
        table(member_table(rows), out) if rows else err.write(f"{where} has no member the operator manages\n")
    else:
        dump({"members": rows}, opts.output, out)
    bad = [r["member"] for r in rows if not r.get("verifiedByTrustedCA")]
    if bad:
        err.write(f"certificates to look at: {', '.join(bad)} (not read, or not verified by the CA the operator "
                  "trusts for them: kubectl harper certificates NAME --ca-bundle prints the authorities that signed "
                  "them, for a Secret named by spec.tls.caSecretRef)\n")
        return NOT_READY
    return OK
