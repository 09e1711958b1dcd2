"""The rendered RBAC, rule by rule (fast: `helm template`; e2e/test_chart.py proves the same rules on a real
API server with `kubectl auth can-i` and by running the operator under the ServiceAccount's token).

Why each rule exists (Kopf 1.45, read from its source):
  harperclusters, harpernodes       get list watch patch   Kopf lists+watches both kinds, JSON/merge-patches
                                                            finalizers and its annotation-stored progress;
                                                            our kube.py gets/annotates clusters
  harperclusters/status, .../status get patch              kube.patch_status (status subresource)
  secrets                           get                    kube.read_secret, by the name a resource gives
  events (core v1)                  create                 Kopf's posting (POST /api/v1/namespaces/x/events)
  customresourcedefinitions         get list watch         Kopf's resource observer (cluster-scoped)
  namespaces                        list watch             only with watchNamespaces: Kopf's namespace observer
                                                            (without it: ~1 min of retries at every start)
  kopfpeerings / clusterkopfpeerings get list watch patch  only with --peering: Kopf watches its peering
                                                            object and merge-patches its keep-alive into it
  with rbac.provisioning (default on), for HarperClusters with spec.instances (controller/provision.py):
  harpernodes                       create delete          one per pod (server-side apply creates), scale-down
  secrets                           create patch           the generated admin Secret; released on Retain
  statefulsets                      get list watch create patch   server-side apply; adopt finds by labels
  services, poddisruptionbudgets    get create patch       server-side apply
  pods                              get list watch delete  readiness; one pod deleted at a time (rolls, restarts)
  certificates (cert-manager.io)    create patch           spec.tls.issuerRef: one Certificate per pod (server-side
                                                            apply, through patch_namespaced_custom_object)
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from chart_support import ROOT, find, one

OWN = {"apiGroups": ["harperoperator.dev"], "resources": ["harperclusters", "harpernodes"],
       "verbs": ["get", "list", "watch", "patch"]}
STATUS = {"apiGroups": ["harperoperator.dev"], "resources": ["harperclusters/status", "harpernodes/status"],
          "verbs": ["get", "patch"]}
SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
EVENTS = {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}
CRDS = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"]}
NAMESPACES = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
CLUSTER_PEERINGS = {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
                    "verbs": ["get", "list", "watch", "patch"]}
PEERINGS = {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "patch"]}
# rbac.provisioning (on by default): what a HarperCluster with spec.instances writes.
PROVISION = [
    {"apiGroups": ["harperoperator.dev"], "resources": ["harpernodes"], "verbs": ["create", "delete"]},
    {"apiGroups": ["harperoperator.dev"], "resources": ["harperclusters/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["list", "patch", "delete"]},
    {"apiGroups": ["cert-manager.io"], "resources": ["certificates"], "verbs": ["create", "patch"]},
]
BASE = [OWN, STATUS, SECRETS, EVENTS]
STRICT = {"provisioning": False}  # external Harper only: the operator touches no workload and writes no Secret

SA = {"kind": "ServiceAccount", "name": "hop-harper-operator", "namespace": "hop-system"}


def aggregated(role) -> bool:
    """The ClusterRoles of rbac.aggregate: rights for people (through admin/edit/view), bound to nobody."""
    return any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in role["metadata"].get("labels", {}))


def roles(docs):
    """The operator's (Cluster)Roles: every one but the aggregated ones (test_chart_aggregate.py checks those)."""
    return [r for r in find(docs, "ClusterRole") + find(docs, "Role") if not aggregated(r)]


def grants(docs, resource: str, verb: str, namespace: str | None = None) -> list[str]:
    """Names of the (Cluster)Roles bound to the operator that allow `verb` on `resource` (in `namespace`)."""
    out = []
    for role in roles(docs):
        ns = role["metadata"].get("namespace")
        if role["kind"] == "Role" and namespace is not None and ns != namespace:
            continue
        for rule in role["rules"]:
            if resource in rule["resources"] and verb in rule["verbs"]:
                out.append(f"{role['kind']}/{ns or ''}/{role['metadata']['name']}")
    return out


def check_bindings(docs):
    """Every (Cluster)Role is bound to the operator's ServiceAccount, and only to it."""
    bound = {}
    for b in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        assert b["subjects"] == [SA], b["metadata"]["name"]
        key = (b["roleRef"]["kind"], b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None,
               b["roleRef"]["name"])
        bound[key] = b
    for r in roles(docs):
        key = (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"])
        assert key in bound, f"{key} is not bound"
    assert len(bound) == len(roles(docs))


def test_cluster_mode_rules(helm):
    docs = helm.render()
    check_bindings(docs)
    assert one(docs, "ClusterRole", "hop-harper-operator")["rules"] == BASE + PROVISION
    assert one(docs, "ClusterRole", "hop-harper-operator-kopf")["rules"] == [CRDS]
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    docs = helm.render({"rbac": STRICT})
    assert one(docs, "ClusterRole", "hop-harper-operator")["rules"] == BASE


def test_cluster_mode_with_peering(helm):
    docs = helm.render({"peering": {"enabled": True}, "rbac": STRICT})
    check_bindings(docs)
    assert one(docs, "ClusterRole", "hop-harper-operator")["rules"] == [OWN, STATUS, SECRETS, EVENTS,
                                                                       CLUSTER_PEERINGS]
    assert one(docs, "ClusterRole", "hop-harper-operator-kopf")["rules"] == [CRDS]


def test_namespaced_mode_rules(helm):
    docs = helm.render({"watchNamespaces": ["team-a", "team-b"], "rbac": STRICT})
    check_bindings(docs)
    for ns in ("team-a", "team-b"):
        assert one(docs, "Role", "hop-harper-operator", ns)["rules"] == [OWN, STATUS, SECRETS, EVENTS]
        binding = one(docs, "RoleBinding", "hop-harper-operator", ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "hop-harper-operator"}
    # The only cluster-wide grants: Kopf's CRD and namespace observers. Nothing namespaced is granted cluster-wide.
    (cluster_role,) = find(roles(docs), "ClusterRole")
    assert cluster_role["metadata"]["name"] == "hop-harper-operator-kopf"
    assert cluster_role["rules"] == [CRDS, NAMESPACES]
    assert not find(docs, "Role", namespace="hop-system"), "the release namespace is not watched"


def test_namespaced_mode_with_peering(helm):
    docs = helm.render({"watchNamespaces": ["team-a"], "peering": {"enabled": True}, "rbac": STRICT})
    check_bindings(docs)
    assert one(docs, "Role", "hop-harper-operator", "team-a")["rules"] == [OWN, STATUS, SECRETS, EVENTS, PEERINGS]
    assert [r["rules"] for r in find(roles(docs), "ClusterRole")] == [[CRDS, NAMESPACES]]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}, {"peering": {"enabled": True}},
                                    {"watchNamespaces": ["a", "b"], "peering": {"enabled": True}}])
def test_no_wildcards_no_broad_verbs(helm, values):
    docs = helm.render({**values, "rbac": STRICT})
    for role in roles(docs):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
            assert not {"create", "update", "delete", "deletecollection", "escalate", "bind", "impersonate"} & \
                set(rule["verbs"]) or rule["resources"] == ["events"], rule
    # Secrets: get only, everywhere.
    for verb in ("list", "watch", "create", "update", "patch", "delete"):
        assert not grants(docs, "secrets", verb), verb
    assert grants(docs, "secrets", "get")
    # Never workloads: the operator talks to Harper, not to pods.
    for resource in ("pods", "deployments", "statefulsets", "services", "configmaps"):
        assert not [r for role in roles(docs) for r in role["rules"] if resource in r["resources"]], resource
    # Namespaces: list+watch for Kopf's namespace observer, only when it serves named namespaces.
    namespace_rules = [r for role in roles(docs) for r in role["rules"] if "namespaces" in r["resources"]]
    assert namespace_rules == ([NAMESPACES] if values.get("watchNamespaces") else [])


def test_namespaced_mode_has_no_cluster_role_granting_secrets(helm):
    docs = helm.render({"watchNamespaces": ["team-a", "team-b"], "peering": {"enabled": True}})
    for role in find(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
    assert sorted(g.split("/")[1] for g in grants(docs, "secrets", "get")) == ["team-a", "team-b"]


def test_without_cluster_scoped_reads(helm):
    """A namespace admin who may not create ClusterRoles: only Roles (Kopf then degrades, with warnings).
    Such an admin turns rbac.aggregate off too: those ClusterRoles are for people, not for the operator."""
    docs = helm.render({"watchNamespaces": ["team-a"], "rbac": {"clusterScopedReads": False, "aggregate": False}})
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert one(docs, "Role", "hop-harper-operator", "team-a")["rules"] == BASE + PROVISION
    docs = helm.render({"rbac": {"clusterScopedReads": False, "aggregate": False}})
    assert [r["metadata"]["name"] for r in find(docs, "ClusterRole")] == ["hop-harper-operator"]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}])
def test_provisioning_rights_stay_narrow(helm, values):
    """Provisioning adds workload rights, never Secret reads beyond get, never update/escalate/bind, never
    Deployments or ConfigMaps; Secrets stay unreadable unless labelled (kube.read_secret)."""
    docs = helm.render(values)
    for role in roles(docs):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            assert not {"update", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]) \
                or rule["resources"] == ["harperclusters/finalizers"], rule
    for verb in ("list", "watch", "update", "delete"):
        assert not grants(docs, "secrets", verb), verb
    for resource in ("deployments", "configmaps", "persistentvolumes"):
        assert not [r for role in roles(docs) for r in role["rules"] if resource in r["resources"]], resource
    # Pods are labelled in or out of the client Service, never created; volume claims are never read in full,
    # created or changed beyond the operator's own mark (docs/safety.md, S2).
    assert not grants(docs, "pods", "create") and not grants(docs, "persistentvolumeclaims", "get")
    assert not grants(docs, "persistentvolumeclaims", "create") and not grants(docs, "persistentvolumeclaims", "watch")


def test_rbac_off_renders_no_rbac(helm):
    docs = helm.render({"rbac": {"create": False}, "watchNamespaces": ["a"], "peering": {"enabled": True}})
    assert not roles(docs) and not find(docs, "ClusterRoleBinding") and not find(docs, "RoleBinding")


# --- drift guard: what the code calls must be in the rules ---------------------------------------------

# Every Kubernetes client method the operator's own code may call -> (apiGroup, resource, verb) it needs.
CLIENT_CALLS = {
    "read_namespaced_secret": ("", "secrets", "get"),
    "get_namespaced_custom_object": ("harperoperator.dev", "*", "get"),
    "list_namespaced_custom_object": ("harperoperator.dev", "*", "list"),
    "patch_namespaced_custom_object": ("harperoperator.dev", "*", "patch"),
    "patch_namespaced_custom_object_status": ("harperoperator.dev", "*/status", "patch"),
    "get_namespaced_custom_object_status": ("harperoperator.dev", "*/status", "get"),
    "delete_namespaced_custom_object": ("harperoperator.dev", "harpernodes", "delete"),
    "create_namespaced_secret": ("", "secrets", "create"),
    "patch_namespaced_secret": ("", "secrets", "patch"),
    "patch_namespaced_service": ("", "services", "patch"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "patch_namespaced_pod": ("", "pods", "patch"),
    "list_namespaced_persistent_volume_claim": ("", "persistentvolumeclaims", "list"),
    "patch_namespaced_persistent_volume_claim": ("", "persistentvolumeclaims", "patch"),
    "delete_namespaced_persistent_volume_claim": ("", "persistentvolumeclaims", "delete"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_stateful_set": ("apps", "statefulsets", "get"),
    "list_namespaced_stateful_set": ("apps", "statefulsets", "list"),
    "patch_namespaced_stateful_set": ("apps", "statefulsets", "patch"),
    "patch_namespaced_pod_disruption_budget": ("policy", "poddisruptionbudgets", "patch"),
}


def _operator_sources():
    return sorted((ROOT / "operator" / "harper_operator").rglob("*.py"))


def test_operator_code_calls_only_granted_apis(helm):
    """Fails when someone adds a Kubernetes call (or an events.k8s.io / CoreV1 event call) without a rule."""
    cluster_rules = BASE + PROVISION
    granted = {(g, r, v) for rule in cluster_rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    seen = set()
    for path in _operator_sources():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        assert "EventsV1Api" not in text and "events.k8s.io" not in text, \
            f"{rel} posts events.k8s.io Events: add that rule to the chart"
        assert "create_namespaced_event" not in text and "patch_namespaced_event" not in text, \
            f"{rel} posts core Events itself: check the chart's events rule (Kopf only creates)"
        for api in re.findall(r"kubernetes\.client\.(\w+Api)\(", text):
            assert api in {"CoreV1Api", "CustomObjectsApi", "AppsV1Api", "PolicyV1Api"}, \
                f"{rel} uses {api}: add its rules to the chart"
        for method in re.findall(r"\.((?:read|get|list|watch|create|patch|replace|delete)_namespaced_\w+)\b", text):
            assert method in CLIENT_CALLS, f"{rel} calls {method}: map it in CLIENT_CALLS and the chart's rules"
            seen.add(method)
    for method in seen:
        group, resource, verb = CLIENT_CALLS[method]
        for plural in ("harperclusters", "harpernodes") if "*" in resource else (resource,):
            name = resource.replace("*", plural)
            assert (group, name, verb) in granted, f"{method} needs {verb} on {group or 'core'}/{name}"
    # And the chart's rules are what this file says.
    assert one(helm.render(), "ClusterRole", "hop-harper-operator")["rules"] == cluster_rules


def test_kopf_calls_only_what_the_chart_grants():
    """Kopf 1.45's own API surface (its client modules): discovery GETs, list+watch, merge/JSON patch, and POST
    only for events (and for webhook configurations, which this operator does not use)."""
    import kopf

    clients = Path(kopf.__file__).parent / "_cogs" / "clients"
    calls = set()
    for path in clients.glob("*.py"):
        calls |= set(re.findall(r"\bapi\.(get|post|patch|put|delete|stream)\(", path.read_text()))
    assert calls == {"get", "post", "patch", "stream"}, calls  # no put (update), no delete
    users = {p.name for p in (Path(kopf.__file__).parent / "_core").rglob("*.py") if "creating." in p.read_text()}
    assert users == {"admission.py"}, users  # creating objects: only for admission webhooks
    assert version("kopf").startswith("1.45."), "the rules were derived from Kopf 1.45: re-read its source"
