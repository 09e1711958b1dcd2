"""rbac.aggregate: ClusterRoles whose rules Kubernetes adds to the built-in admin, edit and view roles (fast:
`helm template`). They are rights for people, not for the operator: bound to nobody, and test_chart_rbac.py's
checks of the operator's own rules leave them out.
"""

from __future__ import annotations

import pytest
import yaml

from chart_support import CHART, ROOT, find, one

GROUP = "harperoperator.dev"
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
EDIT = [
    {"apiGroups": [GROUP], "resources": ["harperclusters", "harpernodes"],
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
    {"apiGroups": [GROUP], "resources": ["harperclusters/status", "harpernodes/status"], "verbs": ["get"]},
    {"apiGroups": [GROUP], "resources": ["harperclusters/scale"], "verbs": ["get", "patch", "update"]},
]
VIEW = [
    {"apiGroups": [GROUP], "resources": ["harperclusters", "harpernodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": ["harperclusters/status", "harpernodes/status", "harperclusters/scale"],
     "verbs": ["get"]},
]


def aggregated(docs) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in find(docs, "ClusterRole")
            if any(k.startswith(AGGREGATE) for k in r["metadata"].get("labels", {}))}


def aggregate_labels(role) -> dict[str, str]:
    return {k: v for k, v in role["metadata"]["labels"].items() if k.startswith(AGGREGATE)}


def test_on_by_default():
    assert yaml.safe_load((CHART / "values.yaml").read_text())["rbac"]["aggregate"] is True


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a", "team-b"]}, {"peering": {"enabled": True}},
                                    {"rbac": {"provisioning": False}}])
def test_edit_and_view_roles(helm, values):
    docs = helm.render(values)
    roles = aggregated(docs)
    assert set(roles) == {"hop-harper-operator-edit", "hop-harper-operator-view"}
    edit, view = roles["hop-harper-operator-edit"], roles["hop-harper-operator-view"]
    # Label values are the string "true": the aggregation selectors match strings.
    assert aggregate_labels(edit) == {AGGREGATE + "admin": "true", AGGREGATE + "edit": "true"}
    assert aggregate_labels(view) == {AGGREGATE + "view": "true"}
    assert edit["rules"] == EDIT and view["rules"] == VIEW
    assert "aggregationRule" not in edit and "aggregationRule" not in view
    assert edit["metadata"]["labels"]["app.kubernetes.io/instance"] == "hop"


def test_bound_to_nobody(helm):
    """Aggregation hands them to admin/edit/view holders; a binding of the chart's would hand them to someone else."""
    docs = helm.render({"watchNamespaces": ["team-a"]})
    names = set(aggregated(docs))
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        assert binding["roleRef"]["name"] not in names, binding["metadata"]["name"]


def test_people_never_write_status_or_reach_beyond_the_two_kinds(helm):
    """The operator owns .status; nothing else (Secrets, workloads) rides along into admin/edit/view."""
    for role in aggregated(helm.render()).values():
        for rule in role["rules"]:
            assert rule["apiGroups"] == [GROUP], rule
            assert "*" not in rule["resources"] and "*" not in rule["verbs"], rule
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
            assert {r.split("/")[0] for r in rule["resources"]} <= {"harperclusters", "harpernodes"}, rule
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), rule
            if any(r.endswith("/status") for r in rule["resources"]):
                assert rule["verbs"] == ["get"], rule
    view = one(helm.render(), "ClusterRole", "hop-harper-operator-view")
    assert {v for rule in view["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}


def test_subresources_exist_in_the_crds(helm):
    """Every subresource the roles name is one the CRDs serve (a rule for a missing one grants nothing)."""
    served = set()
    for path in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        plural = crd["spec"]["names"]["plural"]
        for version in crd["spec"]["versions"]:
            served |= {f"{plural}/{sub}" for sub in version.get("subresources", {})}
    named = {r for role in aggregated(helm.render()).values() for rule in role["rules"] for r in rule["resources"]
             if "/" in r}
    assert named == {"harperclusters/status", "harpernodes/status", "harperclusters/scale"}
    assert named <= served, named - served


@pytest.mark.parametrize("rbac", [{"aggregate": False}, {"create": False}, {"create": False, "aggregate": True}])
def test_off(helm, rbac):
    for values in ({"rbac": rbac}, {"rbac": rbac, "watchNamespaces": ["team-a"]}):
        docs = helm.render(values)
        assert not aggregated(docs)
        assert not [r for r in find(docs, "ClusterRole") if r["metadata"]["name"].endswith(("-edit", "-view"))]


def test_off_leaves_the_operators_rbac_alone(helm):
    on, off = helm.render(), helm.render({"rbac": {"aggregate": False}})
    operators = lambda docs: [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role",
                                                               "RoleBinding")
                              and d["metadata"]["name"] not in aggregated(docs)]
    assert operators(on) == operators(off) and operators(off)


def test_value_must_be_a_boolean(helm):
    done = helm.template({}, "--set", "rbac.aggregate=yes", check=False)
    assert done.returncode and "/rbac/aggregate" in done.stderr


def test_names_follow_the_release(helm):
    docs = helm.render({"fullnameOverride": "ops"})
    assert set(aggregated(docs)) == {"ops-edit", "ops-view"}
