"""Turns the pydantic models into CustomResourceDefinitions: the models are the only source of the schema."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from .cluster import HarperClusterSpec, HarperClusterStatus
from .common import GROUP, VERSION
from .node import HarperNodeSpec, HarperNodeStatus

_DROP = {"title"}


def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """Kubernetes wants structural schemas: no $ref, no anyOf-with-null, no titles."""
    if isinstance(schema, list):
        return [_inline(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return _inline({**target, **extra}, defs)
    if "anyOf" in schema:
        # Optional[X] arrives as anyOf [X, null]: an absent field says the same, so keep X.
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unions are not structural: {schema}")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return _inline({**options[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _inline(sub, defs) for name, sub in value.items()}
        elif key == "default":
            out[key] = _strip_none(value)
        else:
            out[key] = _inline(value, defs)
    if out.get("format") == "date-time":
        out["type"] = "string"
    return out


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


# The status of a resource the operator has not written yet. The API server applies a default whenever it reads an
# object from etcd, so a HarperCluster or HarperNode that no operator has seen (none runs, it serves other namespaces,
# or it has not got to it yet) reads this, not nothing: metadata.generation starts at 1, so kstatus (Flux's health
# checks) says InProgress ("generation is 1, but latest observed generation is 0") and Argo CD's health script
# Progressing, where an absent status reads Current. The operator's first status write sets observedGeneration
# (and the conditions) itself; nothing inside status has a default (see _drop_defaults).
UNSEEN_STATUS: dict[str, Any] = {"observedGeneration": 0}


def _drop_defaults(schema: Any) -> Any:
    """Status is written by the operator alone; defaults inside it would only hide missing writes."""
    if isinstance(schema, dict):
        return {k: _drop_defaults(v) for k, v in schema.items() if k != "default"}
    if isinstance(schema, list):
        return [_drop_defaults(v) for v in schema]
    return schema


def openapi_schema(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    return schema if defaults else _drop_defaults(schema)


def _condition_column(name: str, type_: str) -> dict[str, Any]:
    return {"name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{type_}")].status'}


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_REASON = {"name": "Reason", "type": "string", "priority": 1,
           "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'}


def _crd(kind: str, plural: str, short: str, spec: type[BaseModel], status: type[BaseModel],
         columns: list[dict[str, Any]], description: str, scale: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": [short], "categories": ["harper"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}, **({"scale": scale} if scale else {})},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": description,
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string", "description": "API version of this object."},
                        "kind": {"type": "string", "description": "Kind of this object."},
                        "metadata": {"type": "object"},
                        "spec": {**openapi_schema(spec), "description": spec.__doc__ or "Desired state."},
                        "status": {**openapi_schema(status, defaults=False),
                                   "description": "What the operator last saw in Harper. Until the operator first "
                                                  "writes it: observedGeneration 0.",
                                   "default": copy.deepcopy(UNSEEN_STATUS)},
                    },
                }},
            }],
        },
    }


def crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD manifest."""
    cluster = _crd("HarperCluster", "harperclusters", "hc", HarperClusterSpec, HarperClusterStatus, [
        _condition_column("Ready", "Ready"),
        {"name": "Nodes", "type": "string", "jsonPath": ".status.readyNodes"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.instances.replicas"},
        _REASON, _AGE], "A Harper replication cluster; its members are the HarperNodes that name it.",
        # `kubectl scale hc/NAME --replicas=N` (and a HorizontalPodAutoscaler) set spec.instances.replicas.
        scale={"specReplicasPath": ".spec.instances.replicas", "statusReplicasPath": ".status.replicas",
               "labelSelectorPath": ".status.selector"})
    node = _crd("HarperNode", "harpernodes", "hn", HarperNodeSpec, HarperNodeStatus, [
        _condition_column("Ready", "Ready"),
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterRef.name"},
        {"name": "Hostname", "type": "string", "jsonPath": ".spec.hostname"},
        {"name": "Peers", "type": "string", "jsonPath": ".status.connectedPeers"},
        _REASON, _AGE], "One Harper instance and how it takes part in its HarperCluster.")
    return {f"{GROUP}_harperclusters.yaml": cluster, f"{GROUP}_harpernodes.yaml": node}


HEADER = "# Generated from operator/harper_operator/api by `make crds`; do not edit.\n"


def render(manifest: dict[str, Any]) -> str:
    return HEADER + str(yaml.safe_dump(manifest, sort_keys=False, width=110))


# What `crds --chart-out` adds to each CRD: the chart's labels, and Helm's keep policy, so `helm uninstall` (or an
# upgrade with crds.create=false) never deletes a CRD, which would delete every HarperCluster and HarperNode with it.
_LABELS = "__HARPER_OPERATOR_CHART_LABELS__"
KEEP = {"helm.sh/resource-policy": "keep"}


def chart_template(name: str, manifest: dict[str, Any]) -> str:
    """One CRD as a template of the Helm chart (helm/harper-operator/templates/crds/): the same manifest as in
    crds/, behind the value crds.create, with the chart's labels and the keep annotation. Helm renders templates,
    and so updates them on `helm upgrade`, unlike the files of a chart's crds/ folder. `{{` in the generated text
    (a description, say) is escaped so Helm prints it as it is."""
    meta = manifest["metadata"]
    if meta.get("labels"):
        raise ValueError("the generated CRDs carry no labels of their own; merge them here before adding any")
    labelled = {**manifest, "metadata": {
        **meta, "labels": _LABELS, "annotations": {**meta.get("annotations", {}), **KEEP}}}
    body = str(yaml.safe_dump(labelled, sort_keys=False, width=110)).replace("{{", '{{ "{{" }}')
    body = body.replace(f"  labels: {_LABELS}\n",
                        '  labels:\n    {{- include "harper-operator.labels" . | nindent 4 }}\n', 1)
    assert _LABELS not in body, "the labels placeholder was not replaced"
    return ("{{- /* Generated from operator/harper_operator/api by `make crds` (harper-operator crds --chart-out); "
            "do not edit.\n"
            f"The same CRD as the repository's crds/{name}, as a template so that `helm upgrade` updates it. */}}}}\n"
            '{{- if include "harper-operator.crds.create" . }}\n' + body + "{{- end }}\n")
