"""spec.instances: Harper run by the operator as a StatefulSet, one HarperNode per pod.

The models here describe what a user may set; `provision/render.py` turns them into Kubernetes objects.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from .common import K8S_NAME, Model, rules
from .node import Subscription

# A Kubernetes quantity (1Gi, 500M, 2): validated again by the API server when the StatefulSet is written.
QUANTITY = r"^[0-9]+(\.[0-9]+)?([EPTGMK]i?|[mkMGTPE])?$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# Variables the operator sets itself: a user value would change the node's name, ports or admin user behind
# the operator's back (its HarperNode would then name another host than the pod is).
RESERVED_ENV = ("REPLICATION_HOSTNAME", "REPLICATION_SECUREPORT", "REPLICATION_PORT", "HDB_ADMIN_USERNAME",
                "HDB_ADMIN_PASSWORD", "OPERATIONSAPI_NETWORK_SECUREPORT", "OPERATIONSAPI_NETWORK_PORT",
                "POD_NAME", "POD_NAMESPACE", "TLS_CERTIFICATE", "TLS_PRIVATEKEY", "TLS_CERTIFICATEAUTHORITY")

_FREE_FORM = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


class Storage(Model):
    """The volume each pod keeps its database in (one PersistentVolumeClaim per pod)."""

    size: Annotated[str, Field(description="Requested size of each pod's volume, e.g. 10Gi.", pattern=QUANTITY,
                               max_length=32)] = "1Gi"
    storage_class_name: Annotated[str | None, Field(
        description="StorageClass of the claims; absent: the cluster's default class; \"\": only PersistentVolumes "
                    "made ahead (no dynamic provisioning).", max_length=253)] = None
    mount_path: Annotated[str, Field(description="Where the image keeps Harper's data (its ROOTPATH and HOME).",
                                     pattern=r"^/[^:]*$", max_length=512)] = "/data"


class EnvVar(Model):
    """A plain environment variable for the Harper container (Harper reads its configuration from them)."""

    name: Annotated[str, Field(description="Variable name, e.g. THREADS_COUNT or LOGGING_LEVEL.", min_length=1,
                               max_length=253, pattern=ENV_NAME)]
    value: Annotated[str, Field(description="Its value.", max_length=4096)] = ""


class PodOverrides(Model):
    """What a user may add to the pods the operator writes (scheduling and metadata)."""

    labels: Annotated[dict[str, str], Field(description="Extra pod labels.", max_length=64)] = {}
    annotations: Annotated[dict[str, str], Field(description="Extra pod annotations.", max_length=64)] = {}
    node_selector: Annotated[dict[str, str], Field(description="The pods' nodeSelector.", max_length=64)] = {}
    affinity: Annotated[dict[str, Any] | None, Field(description="The pods' affinity (core/v1 Affinity).",
                                                     json_schema_extra=_FREE_FORM)] = None
    tolerations: Annotated[list[dict[str, Any]], Field(
        description="The pods' tolerations (core/v1 Toleration).", max_length=64,
        json_schema_extra={"items": _FREE_FORM})] = []
    priority_class_name: Annotated[str | None, Field(description="The pods' PriorityClass.", max_length=253,
                                                     pattern=K8S_NAME)] = None
    service_account_name: Annotated[str | None, Field(description="The pods' ServiceAccount.", max_length=253,
                                                      pattern=K8S_NAME)] = None
    security_context: Annotated[dict[str, Any] | None, Field(
        description="The pods' securityContext (core/v1 PodSecurityContext). Absent: non-root with the "
                    "RuntimeDefault seccomp profile, and fsGroup 65532 so a fresh volume is writable.",
        json_schema_extra=_FREE_FORM)] = None


class OrdinalOverride(Model):
    """Shard and subscriptions of the pod with this ordinal (pod NAME-<ordinal>)."""

    ordinal: Annotated[int, Field(description="The pod's ordinal.", ge=0, le=999)]
    shard: Annotated[int | None, Field(description="Shard of this node.", ge=0, le=65535)] = None
    subscriptions: Annotated[list[Subscription] | None, Field(
        description="Explicit subscriptions of this node; absent: full replication.", max_length=64)] = None


class Adopt(Model):
    """An existing StatefulSet of Harper to take over without restarting its pods."""

    match_labels: Annotated[dict[str, str], Field(
        description="Labels of exactly one StatefulSet in the cluster's namespace (its own labels, or its pod "
                    "template's). Its pods must use "
                    "<pod>.<serviceName>.<namespace>.svc.<clusterDomain> as their replication hostname.",
        min_length=1, max_length=16)]


class Instances(Model):
    """Harper run by the operator: a StatefulSet, its Services, a PodDisruptionBudget and one HarperNode per pod."""

    model_config = {**Model.model_config, "json_schema_extra": rules(
        ("has(self.image) != has(self.adopt)", "set exactly one of image (the operator runs Harper) and adopt "
                                               "(it takes over an existing StatefulSet)"))}

    replicas: Annotated[int, Field(description="Number of Harper pods. Scaling down removes the leaving nodes "
                                               "from Harper before their pods go.", ge=0, le=100)] = 3
    image: Annotated[str | None, Field(description="Harper container image (the harperdb npm package's image or "
                                                   "one built on it).", min_length=1, max_length=512)] = None
    image_pull_policy: Annotated[str | None, Field(description="Always, IfNotPresent or Never.",
                                                   pattern=r"^(Always|IfNotPresent|Never)$")] = None
    resources: Annotated[dict[str, Any] | None, Field(
        description="The Harper container's resources (core/v1 ResourceRequirements).",
        json_schema_extra=_FREE_FORM)] = None
    storage: Annotated[Storage, Field(description="Each pod's volume.")] = Storage()
    env: Annotated[list[EnvVar], Field(
        description="Environment of the Harper container: Harper configuration overrides such as THREADS_COUNT. "
                    "Variables that set the node name, ports or admin user are the operator's.", max_length=128,
        json_schema_extra=rules(
            ("self.all(e, !(e.name in [" + ", ".join(f'"{n}"' for n in RESERVED_ENV) + "]))",
             "env may not set " + ", ".join(RESERVED_ENV) + ": the operator sets them"),
            ("self.all(e, self.filter(f, f.name == e.name).size() == 1)", "env names must be unique")))] = []
    pod_template: Annotated[PodOverrides, Field(description="Labels, annotations and scheduling of the pods.")] = \
        PodOverrides()
    ordinals: Annotated[list[OrdinalOverride], Field(
        description="Per-pod shard and subscriptions, by ordinal.", max_length=100, json_schema_extra=rules(
            ("self.all(o, self.filter(p, p.ordinal == o.ordinal).size() == 1)", "each ordinal may appear once")))] = []
    adopt: Annotated[Adopt | None, Field(description="Take over an existing StatefulSet instead of writing one.")] = None

    @model_validator(mode="after")
    def _one_source(self) -> "Instances":
        if (self.image is None) == (self.adopt is None):
            raise ValueError("set exactly one of image and adopt")
        return self

    def override(self, ordinal: int) -> OrdinalOverride | None:
        return next((o for o in self.ordinals if o.ordinal == ordinal), None)
