"""Harper as pods, written by hand for the node layer (provisioning by the operator is the next issue):
a StatefulSet of N pods behind a headless Service, each with its pod DNS name as its replication hostname and
its own static hostPath PersistentVolume."""

from __future__ import annotations

import os
from pathlib import Path

from ..testbed.images import NONROOT

SERVICE = "harper"
OPS_PORT, HTTP_PORT, REPLICATION_PORT = 9925, 9926, 9933


def pod_dns(ordinal: int, namespace: str, domain: str = "cluster.local") -> str:
    return f"{SERVICE}-{ordinal}.{SERVICE}.{namespace}.svc.{domain}"


def volumes(namespace: str, replicas: int, root: Path) -> list[dict]:
    """One static PV per ordinal, bound ahead to the claim the StatefulSet will make for it."""
    out = []
    for i in range(replicas):
        path = root / namespace / f"data-{i}"
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, NONROOT, NONROOT)  # hostPath gets no fsGroup ownership change
        out.append({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{namespace}-harper-{i}"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(path), "type": "Directory"},
                     "claimRef": {"namespace": namespace, "name": f"data-{SERVICE}-{i}"}}})
    return out


def statefulset(namespace: str, image: str, replicas: int, secret: str) -> list[dict]:
    labels = {"app.kubernetes.io/name": "harper"}
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TC_AGREEMENT", "value": "yes"},
        {"name": "HDB_ADMIN_USERNAME", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
        {"name": "HDB_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        # Harper's node name is the pod's stable DNS name, which is also in its self-signed certificate.
        {"name": "REPLICATION_HOSTNAME", "value": f"$(POD_NAME).{SERVICE}.$(POD_NAMESPACE).svc.cluster.local"},
        {"name": "REPLICATION_SECUREPORT", "value": str(REPLICATION_PORT)},
        {"name": "THREADS_COUNT", "value": "1"},
    ]
    probe = {"httpGet": {"path": "/health", "port": OPS_PORT, "scheme": "HTTPS"}, "periodSeconds": 3,
             "timeoutSeconds": 3}
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": namespace},
         # Peers must find each other before they are Ready: they become Ready by joining.
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels, "ports": [
             {"name": "operations", "port": OPS_PORT}, {"name": "http", "port": HTTP_PORT},
             {"name": "replication", "port": REPLICATION_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": SERVICE, "namespace": namespace},
         "spec": {"serviceName": SERVICE, "replicas": replicas, "podManagementPolicy": "Parallel",
                  "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "securityContext": {"runAsNonRoot": True, "runAsUser": NONROOT, "runAsGroup": NONROOT,
                                          "fsGroup": NONROOT, "seccompProfile": {"type": "RuntimeDefault"}},
                      "terminationGracePeriodSeconds": 10,
                      "containers": [{
                          "name": "harper", "image": image, "env": env,
                          "ports": [{"name": "operations", "containerPort": OPS_PORT},
                                    {"name": "http", "containerPort": HTTP_PORT},
                                    {"name": "replication", "containerPort": REPLICATION_PORT}],
                          "readinessProbe": probe,
                          "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                          "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                  "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                      "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "resources": {"requests": {"storage": "1Gi"}}}}]}},
    ]
