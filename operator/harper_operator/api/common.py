"""Building blocks shared by both resources: references, credentials, TLS, conditions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "harperoperator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# A DNS-1123 subdomain, the shape of every Kubernetes object name.
K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Only Secrets carrying this label (value "true") are ever read: a HarperNode author who may not read Secrets
# must not be able to make the operator read one for them (Argo CD marks the Secrets it reads the same way).
READABLE_LABEL = f"{GROUP}/readable"


class Model(BaseModel):
    """camelCase on the wire (Kubernetes style), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules for `json_schema_extra`; each pair is (rule, message)."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]}


class LocalObjectReference(Model):
    """A reference to an object by name in the same namespace."""

    name: Annotated[str, Field(description="Name of the object in the same namespace.", min_length=1,
                               max_length=253, pattern=K8S_NAME)]


class SecretKeySelector(Model):
    """A key of a Secret in the same namespace."""

    name: Annotated[str, Field(description="Name of a Secret in the same namespace.", min_length=1,
                               max_length=253, pattern=K8S_NAME)]
    key: Annotated[str, Field(description="Key inside the Secret.", min_length=1, max_length=253,
                              pattern=r"^[-._a-zA-Z0-9]+$")] = "ca.crt"


class Credentials(Model):
    """Harper super_user credentials; the operator reads them from the Secret on every reconcile."""

    secret_ref: Annotated[LocalObjectReference, Field(
        description="Secret with keys `username` and `password` of a Harper super_user. Every clustering "
                    "operation needs a super_user. The Secret must carry the label harperoperator.dev/readable=true "
                    "(the operator reads no other Secret). A changed Secret is picked up on the next reconcile.")]


class TLS(Model):
    """TLS settings for talking to Harper."""

    verify: Annotated[bool, Field(
        description="Verify the TLS certificates of the operations API and of the replication endpoint. A "
                    "provisioned cluster's pods have certificates of the operator's own CA, verified by default; "
                    "external members made by Harper alone have self-signed CAs and need this off (or their CA "
                    "in caSecretRef).")] = True
    ca_secret_ref: Annotated[SecretKeySelector | None, Field(
        description="Secret holding a PEM CA bundle to trust instead of the system roots. It must carry the "
                    "label harperoperator.dev/readable=true. For a provisioned cluster it is your own CA, which "
                    "signs the pods' certificates: the first certificate in the key is the CA's, and its private "
                    "key is beside it as ca.key or tls.key. Absent on a provisioned cluster: the operator's own "
                    "CA, the Secret NAME-ca.")] = None


class IssuerRef(Model):
    """A cert-manager Issuer or ClusterIssuer."""

    name: Annotated[str, Field(description="Name of the Issuer (in the cluster's namespace) or ClusterIssuer.",
                               min_length=1, max_length=253, pattern=K8S_NAME)]
    kind: Annotated[Literal["Issuer", "ClusterIssuer"], Field(description="Issuer or ClusterIssuer.")] = "Issuer"
    group: Annotated[str, Field(description="The issuer's API group: cert-manager.io, or an external issuer's.",
                                min_length=1, max_length=253, pattern=K8S_NAME)] = "cert-manager.io"


class ClusterTLS(TLS):
    """TLS settings of a cluster: those of a member, and who signs a provisioned cluster's certificates."""

    model_config = {**TLS.model_config, "json_schema_extra": rules(
        ("!has(self.issuerRef) || !has(self.caSecretRef)",
         "issuerRef and caSecretRef exclude each other: with issuerRef, cert-manager signs the pods' certificates "
         "and the CAs to trust are the ca.crt its Secrets carry"))}

    issuer_ref: Annotated[IssuerRef | None, Field(
        description="A provisioned cluster's pod certificates from cert-manager instead of the operator's own CA: the "
                    "operator writes a cert-manager Certificate per pod (NAME-<ordinal>-tls, for the pod's DNS "
                    "names, server and client use) and mounts what cert-manager issues; calls trust the ca.crt of "
                    "those Secrets. Needs cert-manager installed.")] = None

    @model_validator(mode="after")
    def _one_signer(self) -> "ClusterTLS":
        if self.issuer_ref is not None and self.ca_secret_ref is not None:
            raise ValueError("issuerRef and caSecretRef exclude each other")
        return self


DeletionPolicy = Literal["Retain", "Delete"]

DELETION_POLICY_DOC = (
    "What deleting the resource does to Harper. `Delete` runs remove_node so no peer keeps the node's "
    "record; `Retain` leaves Harper untouched.")


class Condition(Model):
    """A status condition, shaped like Kubernetes' metav1.Condition."""

    # Like metav1.Condition every field but observedGeneration is required: each writer sets all five.
    type: Annotated[str, Field(description="Ready, Reconciling or Stalled.")]
    status: Annotated[Literal["True", "False", "Unknown"], Field(description="True, False or Unknown.")]
    reason: Annotated[str, Field(description="A stable CamelCase reason.")]
    message: Annotated[str, Field(description="What happened and, when something is wrong, how to fix it.")]
    last_transition_time: Annotated[str, Field(
        description="When status last changed (RFC 3339).", json_schema_extra={"format": "date-time"})]
    observed_generation: Annotated[int | None, Field(
        description="The generation this condition was computed for.", ge=0)] = None


# metav1 conditions are a map keyed by type: at most one condition of each type, and the API server
# (and server-side apply) merges them by type.
CONDITIONS_LIST = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}

Conditions = Annotated[list[Condition], Field(description="Ready, Reconciling, Stalled.",
                                              json_schema_extra=CONDITIONS_LIST)]
