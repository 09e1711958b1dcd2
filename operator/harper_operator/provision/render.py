"""The Kubernetes objects a provisioned HarperCluster owns, rendered from its spec: pure, no I/O.

Every object is written whole by server-side apply, so rendering the same spec twice gives the same bytes and an
unchanged spec writes nothing. Names: the StatefulSet and its headless Service are NAME, the client Service
NAME-client, the PodDisruptionBudget NAME, the admin Secret NAME-admin, the cluster's certificate authority NAME-ca,
the pods' certificates NAME-tls and the HarperNodes NAME-<ordinal>.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from ..api import API_VERSION, GROUP, HarperClusterSpec, hosts
from ..api.common import IssuerRef
from ..api.cluster import generated_ca_secret_name, generated_tls_secret_name
from ..api.instances import Instances
from .pki import Authority, KeyPair

CLUSTER_LABEL = f"{GROUP}/cluster"
ORDINAL_LABEL = f"{GROUP}/ordinal"
POD_ANNOTATION = f"{GROUP}/pod"  # on a provisioned HarperNode: the pod it describes (restarts delete it)
# On a pod: "true" puts it in the client Service; a leaving pod gets "false" before its data is confirmed elsewhere,
# so no new client write reaches it (docs/safety.md, S1). Set by the operator on the pods, not in the template: a
# template change would roll every pod.
SERVING_LABEL = f"{GROUP}/serving"
# On a volume claim: its data was proven to be on the members that stay when its member left (S2). Only a marked
# claim is ever deleted by the operator; the mark goes when the ordinal is wanted again.
RELEASED_ANNOTATION = f"{GROUP}/released"
CLAIM_TEMPLATE = "data"
FIELD_MANAGER = "harper-operator"
HARPER_CONTAINER = "harper"  # the pods' Harper container (the restart checks read its start)

OPS_PORT, HTTP_PORT, REPLICATION_PORT = 9925, 9926, 9933
TLS_DIR = "/etc/harper/tls"  # the pods' certificates Secret, mounted whole: <pod>.crt, <pod>.key and ca.crt
CA_KEY = "ca.crt"
CA_PRIVATE_KEYS = ("ca.key", "tls.key")  # where a CA Secret keeps its key: ours, or cert-manager's CA Secrets
# During a rollover of the operator's own authority: the key of the one it replaces, which signs until every pod
# trusts the new one (pki.Authority); gone once the rollover is done.
CA_PREVIOUS_KEY = "previous.key"
DEFAULT_UID = 65532
# Pod names NAME-<ordinal> and the StatefulSet's revision label NAME-<10 characters> must stay DNS labels (63).
MAX_NAME = 47


@dataclass(frozen=True)
class Owner:
    """The HarperCluster whose objects these are."""

    namespace: str
    name: str
    uid: str
    domain: str = "cluster.local"  # the Kubernetes cluster's DNS domain

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "HarperCluster", "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class Place:
    """Where the pods of a StatefulSet are found: its name and its governing (headless) Service."""

    statefulset: str
    service: str

    def pod(self, ordinal: int) -> str:
        return f"{self.statefulset}-{ordinal}"

    def host(self, ordinal: int, owner: Owner) -> str:
        """The pod's stable DNS name: Harper's node name, in its certificate, and what peers dial."""
        return f"{self.pod(ordinal)}.{self.service}.{owner.namespace}.svc.{owner.domain}"


def selector(owner: Owner) -> dict[str, str]:
    return {"app.kubernetes.io/name": "harper", CLUSTER_LABEL: owner.name}


def selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def adopts(match_labels: dict[str, str], statefulset: dict[str, Any]) -> bool:
    """spec.instances.adopt.matchLabels selects a StatefulSet by its own labels or by its pods' labels (Harper's
    chart, like most, labels only the pods)."""
    own = (statefulset.get("metadata") or {}).get("labels") or {}
    pods = (((statefulset.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    return any(all(found.get(k) == v for k, v in match_labels.items()) for found in (own, pods))


def labels(owner: Owner) -> dict[str, str]:
    return {**selector(owner), "app.kubernetes.io/instance": owner.name, "app.kubernetes.io/managed-by": "harper-operator"}


def _meta(owner: Owner, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": owner.namespace, "labels": labels(owner),
            "ownerReferences": [owner.reference()], **extra}


def _ports() -> list[dict[str, Any]]:
    return [{"name": "operations", "port": OPS_PORT, "targetPort": "operations"},
            {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
            {"name": "replication", "port": REPLICATION_PORT, "targetPort": "replication"}]


def headless_service(owner: Owner) -> dict[str, Any]:
    # Peers must find each other before they are Ready: a pod becomes Ready only once Harper answers.
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, owner.name),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": selector(owner),
                     "ports": _ports()}}


def client_service(owner: Owner) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, f"{owner.name}-client"),
            "spec": {"type": "ClusterIP", "selector": {**selector(owner), SERVING_LABEL: "true"},
                     "ports": _ports()[:2]}}


def disruption_budget(owner: Owner) -> dict[str, Any]:
    """One voluntary disruption at a time (a drain waits for the previous pod to be back)."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(owner, owner.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner)}}}


def admin_secret(owner: Owner, secret_name: str, username: str, password: str) -> dict[str, Any]:
    """Written once (create, never apply): a later render never replaces a password Harper already uses."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {**_meta(owner, secret_name), "labels": {**labels(owner), f"{GROUP}/readable": "true"}},
            "stringData": {"username": username, "password": password}}


def _secret_data(values: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}


def ca_secret(owner: Owner, authority: Authority) -> dict[str, Any]:
    """The cluster's certificate authority. Created once, never applied: a new authority would make every pod's
    certificate untrusted at once; only a rollover changes it (ca_secret_change). Readable by the operator, which signs
    with it and verifies every call against its ca.crt (every authority trusted, the signing one first); never
    mounted in a pod."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {**_meta(owner, generated_ca_secret_name(owner.name)),
                         "labels": {**labels(owner), f"{GROUP}/readable": "true"}},
            "data": _secret_data(_authority_files(authority))}


def _authority_files(authority: Authority) -> dict[str, str]:
    files = {CA_KEY: authority.bundle, "ca.key": authority.signing.key}
    if authority.previous is not None:
        files[CA_PREVIOUS_KEY] = authority.previous.key
    return files


def ca_secret_change(authority: Authority) -> dict[str, Any]:
    """The merge patch of the authority's Secret for a rollover's start or end: its files, and no previous key once
    there is no previous authority."""
    data: dict[str, str | None] = {CA_PREVIOUS_KEY: None, **_secret_data(_authority_files(authority))}
    return {"data": data}


def issued_secret_name(pod: str) -> str:
    """The Secret cert-manager writes a pod's certificate to (tls.crt, tls.key, ca.crt); its Certificate has the same
    name."""
    return f"{pod}-tls"


def certificate_request(owner: Owner, place: Place, ordinal: int, issuer: IssuerRef) -> dict[str, Any]:
    """A cert-manager Certificate for one pod, what pki.issue() makes when the operator signs: the pod's names (the
    node name first, as the subject when it fits), server and client use (replication is mutual TLS), RSA 2048, a new
    key at each renewal. Its Secret is labelled readable, so the operator can copy it into the pods' Secret."""
    names = certificate_names(owner, place, ordinal)
    ips = [n for n in names if hosts.is_address(n)]
    spec: dict[str, Any] = {
        "secretName": issued_secret_name(place.pod(ordinal)),
        "dnsNames": [n for n in names if not hosts.is_address(n)], "ipAddresses": ips,
        "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        "privateKey": {"algorithm": "RSA", "size": 2048, "encoding": "PKCS8", "rotationPolicy": "Always"},
        "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        "secretTemplate": {"labels": {**labels(owner), f"{GROUP}/readable": "true"}}}
    if len(names[0]) <= 64:  # a subject's common name has at most 64 characters; the DNS names carry it anyway
        spec["commonName"] = names[0]
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": _meta(owner, issued_secret_name(place.pod(ordinal))), "spec": spec}


def certificate_names(owner: Owner, place: Place, ordinal: int) -> tuple[str, ...]:
    """What a pod's certificate is for, its node name first (Harper takes the subject and the DNS names as who the
    pod is): its DNS names in the headless Service, the client Service's, and loopback for a port-forward."""
    host, ns = place.host(ordinal, owner), owner.namespace
    pod, client = f"{place.pod(ordinal)}.{place.service}", f"{owner.name}-client"
    return (host, pod, f"{pod}.{ns}", f"{pod}.{ns}.svc", client, f"{client}.{ns}", f"{client}.{ns}.svc",
            f"{client}.{ns}.svc.{owner.domain}", "localhost", "127.0.0.1")


def tls_secret(owner: Owner, trusted: str, certificates: dict[str, KeyPair]) -> dict[str, Any]:
    """Every pod's certificate and key (<pod>.crt, <pod>.key) and the authorities to trust (ca.crt). One Secret for
    the StatefulSet's one pod template, each pod reading its own files by its name; readable by the operator, which
    keeps the certificates that are still good."""
    files = {CA_KEY: trusted}
    for pod, pair in certificates.items():
        files[f"{pod}.crt"], files[f"{pod}.key"] = pair.certificate, pair.key
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {**_meta(owner, generated_tls_secret_name(owner.name)),
                         "labels": {**labels(owner), f"{GROUP}/readable": "true"}},
            "data": _secret_data(files)}


def _env(instances: Instances, secret_name: str, owner: Owner) -> list[dict[str, Any]]:
    def from_secret(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": secret_name, "key": key}}

    ours: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TC_AGREEMENT", "value": "yes"},
        {"name": "HDB_ADMIN_USERNAME", "valueFrom": from_secret("username")},
        {"name": "HDB_ADMIN_PASSWORD", "valueFrom": from_secret("password")},
        {"name": "REPLICATION_HOSTNAME", "value": f"$(POD_NAME).{owner.name}.$(POD_NAMESPACE).svc.{owner.domain}"},
        {"name": "REPLICATION_SECUREPORT", "value": str(REPLICATION_PORT)},
        # The cluster CA's certificate for this pod: Harper serves it on the operations API and presents it to its
        # peers, and trusts peers signed by ca.crt, so no first join signs anything (docs/harper-semantics.md).
        {"name": "TLS_CERTIFICATE", "value": f"{TLS_DIR}/$(POD_NAME).crt"},
        {"name": "TLS_PRIVATEKEY", "value": f"{TLS_DIR}/$(POD_NAME).key"},
        {"name": "TLS_CERTIFICATEAUTHORITY", "value": f"{TLS_DIR}/{CA_KEY}"},
    ]
    taken = {e["name"] for e in ours}
    return ours + [{"name": e.name, "value": e.value} for e in instances.env if e.name not in taken]


def _pod_spec(instances: Instances, secret_name: str, owner: Owner) -> dict[str, Any]:
    t = instances.pod_template
    probe = {"httpGet": {"path": "/health", "port": "operations", "scheme": "HTTPS"}, "periodSeconds": 3,
             "timeoutSeconds": 3, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": HARPER_CONTAINER, "image": instances.image, "env": _env(instances, secret_name, owner),
        "ports": [{"name": "operations", "containerPort": OPS_PORT}, {"name": "http", "containerPort": HTTP_PORT},
                  {"name": "replication", "containerPort": REPLICATION_PORT}],
        "readinessProbe": probe,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": instances.storage.mount_path},
                         {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}]}
    if instances.image_pull_policy:
        container["imagePullPolicy"] = instances.image_pull_policy
    if instances.resources:
        container["resources"] = dict(instances.resources)
    spec: dict[str, Any] = {
        "securityContext": dict(t.security_context) if t.security_context is not None else {
            "runAsNonRoot": True, "fsGroup": DEFAULT_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        # Harper flushes to disk on SIGTERM; a restart the operator makes waits for it.
        "terminationGracePeriodSeconds": 30,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [{"name": "tls", "secret": {"secretName": generated_tls_secret_name(owner.name)}}]}
    for key, value in (("nodeSelector", dict(t.node_selector)), ("affinity", t.affinity),
                       ("tolerations", [dict(x) for x in t.tolerations]),
                       ("priorityClassName", t.priority_class_name), ("serviceAccountName", t.service_account_name)):
        if value:
            spec[key] = value
    return spec


def statefulset(owner: Owner, spec: HarperClusterSpec, replicas: int) -> dict[str, Any]:
    """The StatefulSet; `replicas` comes from the scale plan (it lags spec.instances.replicas on the way down).

    OnDelete: the operator rolls pods itself, one at a time, each only after the previous one is back in the mesh.
    Parallel: pods start together; the operator, not the pod order, decides who joins whom."""
    instances = spec.instances
    assert instances is not None, "only a provisioned cluster (spec.instances) has a StatefulSet"
    keep = "Retain" if spec.deletion_policy == "Retain" else "Delete"
    # whenScaled Retain whatever the policy: replicas 0 hibernates, and a scaled-down member's volume is deleted by
    # the operator itself, only once its data is proven safe elsewhere (provision/scale.py).
    t = instances.pod_template
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": instances.storage.size}}}
    if instances.storage.storage_class_name is not None:
        claim["storageClassName"] = instances.storage.storage_class_name
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(owner, owner.name),
            "spec": {
                "replicas": replicas, "serviceName": owner.name, "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "OnDelete"},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": keep, "whenScaled": "Retain"},
                "selector": {"matchLabels": selector(owner)},
                "template": {"metadata": {"labels": {**dict(t.labels), **labels(owner)},
                                          **({"annotations": dict(t.annotations)} if t.annotations else {})},
                             "spec": _pod_spec(instances, spec.secret_name(owner.name), owner)},
                "volumeClaimTemplates": [{"metadata": {"name": CLAIM_TEMPLATE}, "spec": claim}]}}


def harper_node(owner: Owner, instances: Instances, place: Place, ordinal: int) -> dict[str, Any]:
    """The HarperNode of one pod. Its URLs are the pod's own DNS name, so no user-written URL can point elsewhere;
    deletionPolicy Delete: a node leaves only by scaling down, and then Harper must forget it."""
    host = place.host(ordinal, owner)
    spec: dict[str, Any] = {"clusterRef": {"name": owner.name}, "hostname": host,
                            "url": f"wss://{host}:{REPLICATION_PORT}", "operationsUrl": f"https://{host}:{OPS_PORT}",
                            "deletionPolicy": "Delete"}
    override = instances.override(ordinal)
    if override is not None and override.shard is not None:
        spec["shard"] = override.shard
    if override is not None and override.subscriptions is not None:
        spec["subscriptions"] = [s.model_dump(by_alias=True, exclude_none=True) for s in override.subscriptions]
    return {"apiVersion": API_VERSION, "kind": "HarperNode",
            "metadata": {**_meta(owner, f"{owner.name}-{ordinal}"),
                         "labels": {**labels(owner), ORDINAL_LABEL: str(ordinal)},
                         "annotations": {POD_ANNOTATION: place.pod(ordinal)}},
            "spec": spec}
