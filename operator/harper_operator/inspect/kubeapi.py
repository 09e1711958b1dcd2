"""The Kubernetes side: an API client with the user's own credentials (kubectl's choice of them), and the reads
every inspecting command makes (HarperClusters, their HarperNodes, their Secrets), each with a timeout."""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ..api import GROUP, READABLE_LABEL, VERSION, HarperClusterSpec, hosts
from ..controller.members import Membership, SecretData, membership, secret_names
from .errors import CliError, NotFound

TIMEOUT = (5.0, 30.0)  # (connect, read) seconds of every API call
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass
class Kube:
    """An API client with the user's own credentials, and the namespace a command uses when -n is absent."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str


def _kubeconfig_namespace(path: str, context: str | None) -> str:
    contexts, current = kubernetes.config.list_kube_config_contexts(config_file=path)
    chosen = current if context is None else next((c for c in contexts if c.get("name") == context), None)
    if chosen is None:
        raise CliError(f"context {context!r} is not in the kubeconfig ({path})")
    return ((chosen.get("context") or {}).get("namespace")) or "default"


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """kubectl's choice of credentials: --kubeconfig, else $KUBECONFIG, else in-cluster (a pod's service
    account), else ~/.kube/config; --context picks a context (default: the current one). The namespace is the
    context's (in a pod: the service account's), else "default"."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=config)
            try:
                with open(SA_NAMESPACE) as f:
                    namespace = f.read().strip() or "default"
            except OSError:
                namespace = "default"
            return Kube(kubernetes.client.ApiClient(config), namespace)
        path = path or "~/.kube/config"  # the loader expands ~ and reads a KUBECONFIG list (a:b)
        namespace = _kubeconfig_namespace(path, context)
        return Kube(kubernetes.config.new_client_from_config(config_file=path, context=context), namespace)
    except ConfigException as e:
        raise CliError(f"kubeconfig: {e}") from None


def api_error(e: ApiException, what: str) -> CliError:
    try:
        message = json.loads(e.body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        message = ""
    text = f"{what}: the API server answered {e.status} {e.reason or ''}".rstrip()
    return (NotFound if e.status == 404 else CliError)(f"{text}: {message}" if message else text)


def _custom(kube: Kube):
    return kubernetes.client.CustomObjectsApi(kube.api)


def get_cluster(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    try:
        return _custom(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, "harperclusters", name,
                                                          _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            raise NotFound(f"HarperCluster {namespace}/{name} not found") from None
        raise api_error(e, f"reading HarperCluster {namespace}/{name}") from None


def list_clusters(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    """Every HarperCluster of a namespace, or of every namespace (None)."""
    try:
        if namespace is None:
            found = _custom(kube).list_cluster_custom_object(GROUP, VERSION, "harperclusters",
                                                             _request_timeout=TIMEOUT)
        else:
            found = _custom(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, "harperclusters",
                                                                _request_timeout=TIMEOUT)
    except ApiException as e:
        raise api_error(e, "listing HarperClusters") from None
    return sorted(found.get("items") or [], key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))


def nodes_of(kube: Kube, cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The HarperNodes whose spec.clusterRef.name names the cluster, in its namespace."""
    namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
    try:
        found = _custom(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, "harpernodes",
                                                            _request_timeout=TIMEOUT)
    except ApiException as e:
        raise api_error(e, f"listing the HarperNodes of {namespace}") from None
    return sorted((n for n in found.get("items") or []
                   if ((n.get("spec") or {}).get("clusterRef") or {}).get("name") == name),
                  key=lambda n: n["metadata"]["name"])


def _text(value: str) -> str | None:
    try:
        return base64.b64decode(value).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def read_secret(kube: Kube, namespace: str, name: str) -> SecretData | None:
    """A Secret as the operator would see it (content only with the readable label), read with the user's
    credentials: their RBAC decides. None when it does not exist."""
    try:
        secret = kubernetes.client.CoreV1Api(kube.api).read_namespaced_secret(name, namespace,
                                                                              _request_timeout=TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None
        return SecretData(readable=False, error=str(api_error(e, f"reading Secret {namespace}/{name}")))
    if ((secret.metadata.labels or {}).get(READABLE_LABEL) or "").lower() != "true":
        return SecretData(readable=False)
    return SecretData(readable=True, data={k: _text(v) for k, v in (secret.data or {}).items()})


def spec_of(body: Mapping[str, Any]) -> HarperClusterSpec:
    try:
        return HarperClusterSpec.model_validate(body.get("spec") or {})
    except ValueError as e:
        raise CliError(f"HarperCluster {body['metadata']['name']} has a spec the operator cannot read: {e}") from None


def read_membership(kube: Kube, cluster: Mapping[str, Any], spec: HarperClusterSpec,
                    nodes: list[dict[str, Any]], cluster_domain: str = hosts.DEFAULT_CLUSTER_DOMAIN) -> Membership:
    namespace = cluster["metadata"]["namespace"]
    spec = spec.with_credentials(cluster["metadata"]["name"])
    secrets = {n: read_secret(kube, namespace, n) for n in sorted(secret_names(spec, nodes))}
    return membership(spec, nodes, secrets, namespace=namespace, cluster_domain=cluster_domain)
