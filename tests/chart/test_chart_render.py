"""The chart lints and renders what an operator install needs (fast: `helm lint` / `helm template`, no cluster).

These check the rendered manifests only; e2e/test_chart.py installs the same chart into a real
kube-apiserver and runs the operator with the ServiceAccount it creates.
"""

from __future__ import annotations


import pytest
import yaml

from chart_support import CHART, ROOT, find, one, render_notes

CASES = {
    "default": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "metrics": {"metrics": {"service": {"enabled": True}, "serviceMonitor": {"enabled": True,
                                                                           "labels": {"release": "prom"}}}},
    "peering-clusterwide": {"peering": {"enabled": True}},
    "peering-namespaced": {"watchNamespaces": ["team-a"], "peering": {"enabled": True, "name": "harper"}},
    "argocd": {"argocd": {"healthCheck": {"enabled": True}}},
    "grafana": {"grafana": {"dashboard": {"enabled": True, "annotations": {"grafana_folder": "Harper"}}}},
    "no-crds": {"crds": {"create": False}},
    "everything": {"watchNamespaces": ["team-a"], "peering": {"enabled": True},
                   "metrics": {"port": 9090, "serviceMonitor": {"enabled": True}},
                   "argocd": {"healthCheck": {"enabled": True}}, "log": {"format": "plain", "level": "DEBUG"},
                   "image": {"digest": "sha256:" + "a" * 64}, "extraEnv": [{"name": "X", "value": "1"}],
                   "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"operator": "Exists"}],
                   "priorityClassName": "system-cluster-critical", "podAnnotations": {"a": "b"}},
}


def deployment(docs):
    return one(docs, "Deployment")


def kopf_crds(docs):
    """The peering CRDs (templates/peering-crds.yaml), not the chart's own (templates/crds/)."""
    return [d for d in find(docs, "CustomResourceDefinition") if d["spec"]["group"] == "kopf.dev"]


def container(docs):
    (c,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return c


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "harper-operator"
    assert chart["appVersion"] == "0.1.0" and chart["type"] == "application"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{chart["appVersion"]}"' in pyproject, "appVersion must follow the package version"


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint(helm, case, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(CASES[case]))
    done = helm.run("lint", "--strict", str(CHART), "--values", str(values), "--namespace", "hop-system")
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_template_renders_valid_objects(helm, case):
    docs = helm.render(CASES[case])
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"):
            d = {**d, "data": {}}  # Grafana's own {{label}} legends: test_grafana_dashboard.py checks that JSON
        assert "{{" not in yaml.safe_dump(d), "unrendered template text"
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ClusterKopfPeering"}
    for d in docs:
        if d["kind"] not in cluster_scoped:
            assert d["metadata"].get("namespace"), f"{d['kind']} {d['metadata']['name']} has no namespace"
    # The chart's own CRDs are templates (crds.create, default true): test_chart_crds.py checks them.
    ours = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")} & {
        "harperclusters.harperoperator.dev", "harpernodes.harperoperator.dev"}
    assert len(ours) == (0 if CASES[case].get("crds", {}).get("create") is False else 2), ours


def test_deployment_defaults(helm):
    docs = helm.render()
    d = deployment(docs)
    assert d["metadata"]["namespace"] == "hop-system"
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    c = container(docs)
    assert c["image"] == "ghcr.io/harper-operator/harper-operator:0.1.0"
    assert "command" not in c, "the image's ENTRYPOINT is `harper-operator run`"
    assert c["args"] == ["--log-format=json", "--log-level=INFO", "--metrics-port=8080",
                         "--min-reconcile-interval=0", "--verify-timeout=30", "--max-concurrent-rounds=32",
                         "--cluster-domain=cluster.local"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8080, "healthz": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    # Nothing optional by default.
    assert not find(docs, "Service") and not find(docs, "ServiceMonitor") and not find(docs, "ConfigMap")
    assert not kopf_crds(docs) and not find(docs, "ClusterKopfPeering")


def test_the_cli_accepts_every_rendered_flag(helm):
    """The Deployment's args parse with the operator's own argument parser."""
    from harper_operator.cli import parser

    for case in CASES.values():
        args = parser().parse_args(["run", *container(helm.render(case))["args"]])
        assert args.command == "run"
    args = parser().parse_args(["run", *container(helm.render(CASES["everything"]))["args"]])
    assert args.namespaces == ["team-a"] and args.metrics_port == 9090 and args.peering == "hop-harper-operator"
    assert args.log_format == "plain" and args.log_level == "DEBUG"


def test_namespaces_and_peering_flags(helm):
    args = container(helm.render(CASES["peering-namespaced"]))["args"]
    assert args.count("--namespace=team-a") == 1 and "--peering=harper" in args
    args = container(helm.render(CASES["namespaced"]))["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    assert not [a for a in args if a.startswith("--peering")]


def test_image_digest_wins_and_tag_override(helm):
    assert container(helm.render(CASES["everything"]))["image"] == \
        "ghcr.io/harper-operator/harper-operator@sha256:" + "a" * 64
    assert container(helm.render({"image": {"tag": "dev"}}))["image"].endswith(":dev")


def test_metrics_port_zero_turns_off_ports_and_probe(helm):
    c = container(helm.render({"metrics": {"port": 0}}))
    assert "--metrics-port=0" in c["args"] and "ports" not in c and "livenessProbe" not in c
    done = helm.template({"metrics": {"port": 0, "service": {"enabled": True}}}, check=False)
    assert done.returncode and "need metrics.port" in done.stderr


def test_metrics_service_and_servicemonitor(helm):
    docs = helm.render(CASES["metrics"])
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == deployment(docs)["spec"]["selector"]["matchLabels"]
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["hop-system"]}
    labels = svc["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    # A ServiceMonitor alone brings its Service.
    docs = helm.render({"metrics": {"serviceMonitor": {"enabled": True}}})
    assert one(docs, "Service") and one(docs, "ServiceMonitor")


def test_extra_pod_settings(helm):
    docs = helm.render(CASES["everything"])
    pod = deployment(docs)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert deployment(docs)["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert {"name": "X", "value": "1"} in container(docs)["env"]
    assert container(docs)["livenessProbe"]["httpGet"]["port"] == "healthz"
    assert {p["name"]: p["containerPort"] for p in container(docs)["ports"]} == {"metrics": 9090, "healthz": 9091}


def test_peering_crds_follow_kopfs_documented_shape(helm):
    docs = helm.render(CASES["peering-clusterwide"])
    crds = {d["metadata"]["name"]: d for d in kopf_crds(docs)}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for name, scope, kind in (("clusterkopfpeerings.kopf.dev", "Cluster", "ClusterKopfPeering"),
                              ("kopfpeerings.kopf.dev", "Namespaced", "KopfPeering")):
        spec = crds[name]["spec"]
        assert spec["group"] == "kopf.dev" and spec["scope"] == scope and spec["names"]["kind"] == kind
        (version,) = spec["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        # Kopf merge-patches the object itself: a status subresource would send its keep-alives nowhere.
        assert "subresources" not in version
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["type"] == "object" and status["x-kubernetes-preserve-unknown-fields"] is True
        assert crds[name]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Kopf's own peering selectors match exactly these resources (and so does the clusterwide/namespaced split).
    from kopf._cogs.structs import references

    for name, selector, namespaced in (("clusterkopfpeerings.kopf.dev", references.CLUSTER_PEERINGS_K, False),
                                       ("kopfpeerings.kopf.dev", references.NAMESPACED_PEERINGS_K, True)):
        names = crds[name]["spec"]["names"]
        resource = references.Resource(group="kopf.dev", version="v1", plural=names["plural"], kind=names["kind"],
                                       singular=names["singular"], namespaced=namespaced,
                                       verbs=frozenset({"get", "list", "watch", "patch"}))
        assert selector.check(resource), name


def test_peering_objects_are_post_install_hooks(helm):
    docs = helm.render(CASES["peering-clusterwide"])
    peering = one(docs, "ClusterKopfPeering", "hop-harper-operator")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    docs = helm.render({"watchNamespaces": ["team-a", "team-b"], "peering": {"enabled": True, "name": "p"}})
    assert not find(docs, "ClusterKopfPeering")
    assert {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in find(docs, "KopfPeering")} == \
        {("team-a", "p"), ("team-b", "p")}
    docs = helm.render({"peering": {"enabled": True, "installCRDs": False}})
    assert not kopf_crds(docs) and one(docs, "ClusterKopfPeering")


def test_service_account_switches(helm):
    docs = helm.render({"serviceAccount": {"create": False, "name": "mine"}})
    assert not find(docs, "ServiceAccount")
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    assert all(s["name"] == "mine" for b in find(docs, "ClusterRoleBinding") for s in b["subjects"])
    done = helm.template({"serviceAccount": {"create": False}}, check=False)
    assert done.returncode and "serviceAccount.name is required" in done.stderr
    docs = helm.render({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn"}}})
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn"}


def test_names_follow_overrides(helm):
    docs = helm.render({"fullnameOverride": "hop"})
    assert deployment(docs)["metadata"]["name"] == "hop"
    docs = helm.render(release="harper-operator")
    assert deployment(docs)["metadata"]["name"] == "harper-operator"


def test_notes_say_what_to_apply_next(helm, tmp_path):
    """`helm template` skips NOTES.txt, so render it through a throw-away copy of the chart (stand-in for
    the NOTES `helm install` prints; e2e/test_chart.py reads those from a real install)."""
    text = render_notes(helm, tmp_path, {"watchNamespaces": ["team-a"]})
    assert "kubectl -n team-a create secret generic harper-admin" in text
    assert "kind: HarperCluster" in text and "kind: HarperNode" in text
    assert "kubectl -n team-a get hc,hn" in text
    assert "kubectl -n team-a scale hc/harper --replicas=5" in text and "instances: {replicas: 3" in text
    assert "Secrets there and nowhere else" in text
    text = render_notes(helm, tmp_path / "defaults", {})
    assert "every namespace" in text and "kubectl -n default get hc,hn" in text and "/healthz" in text


def test_no_provisioning_rights_tell_the_operator(helm):
    """rbac.provisioning=false: the operator must not watch pods (it may not) and says why spec.instances stalls."""
    assert "--no-provisioning" not in container(helm.render())["args"]
    assert "--no-provisioning" in container(helm.render({"rbac": {"provisioning": False}}))["args"]
