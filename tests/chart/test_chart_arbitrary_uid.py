"""runAsArbitraryUser: no fixed uid, gid or fsGroup, for OpenShift's restricted SCCs (fast: `helm template`,
plus static reads of the image recipe and the operator's sources).

STAND-IN: no OpenShift here. What the SCC admission does with the pod (assign a uid from the namespace's
range, reject a fixed one outside it) is not run; these check that the pod names no uid, keeps every other
restriction, and that the image and the code need nothing a uid without a passwd entry lacks.
"""

from __future__ import annotations

import re

import pytest
import yaml

from chart_support import CHART, ROOT, find, one

ON = {"runAsArbitraryUser": True}
METRICS = {"metrics": {"service": {"enabled": True}}}  # brings the helm test pod too
UID_KEYS = {"runAsUser", "runAsGroup", "fsGroup", "supplementalGroups"}


def pods(docs) -> list[dict]:
    """Every pod spec the chart renders: the Deployment's template and the helm test pod."""
    return [d["spec"]["template"]["spec"] for d in find(docs, "Deployment")] + [p["spec"] for p in find(docs, "Pod")]


def uid_keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return (UID_KEYS & set(obj)) | {k for v in obj.values() for k in uid_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in uid_keys(v)}
    return set()


def check_restricted(pod):
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_off_by_default():
    assert yaml.safe_load((CHART / "values.yaml").read_text())["runAsArbitraryUser"] is False


def test_default_runs_the_images_fixed_uid(helm):
    docs = helm.render(METRICS)
    assert len(pods(docs)) == 2
    for pod in pods(docs):
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        for c in pod["containers"]:
            assert c["securityContext"]["runAsUser"] == 65532 and c["securityContext"]["runAsGroup"] == 65532
        check_restricted(pod)


@pytest.mark.parametrize("extra", [{}, METRICS, {"watchNamespaces": ["team-a"], "peering": {"enabled": True}}])
def test_arbitrary_uid_names_no_uid_anywhere(helm, extra):
    docs = helm.render({**ON, **extra})
    assert pods(docs)
    for pod in pods(docs):
        assert uid_keys(pod) == set(), pod
        check_restricted(pod)
    # Nothing else in the release names a uid either.
    assert uid_keys(docs) == set()


def test_arbitrary_uid_keeps_what_the_image_needs(helm):
    """A writable /tmp on the read-only root, and POD_ID: Kopf's identity without asking for a login name."""
    pod = one(helm.render(ON), "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]
    assert not [e for e in c["env"] if e["name"] == "HOME"], "the operator needs no HOME"


def test_value_must_be_a_boolean(helm):
    done = helm.template({}, "--set", "runAsArbitraryUser=yes", check=False)
    assert done.returncode and "/runAsArbitraryUser" in done.stderr


# --- the image and the code under a uid the image does not know ------------------------------------------

def test_dockerfile_leaves_everything_root_owned_and_readable():
    """No file belongs to 65532 alone: COPY without --chown, no chown or chmod, pip's default modes (0644/0755),
    so any uid reads the virtualenv and writes nothing in it."""
    text = (ROOT / "operator" / "Dockerfile").read_text()
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    assert "--chown" not in code and "chown " not in code and "chmod " not in code and "umask" not in code
    assert "PYTHONDONTWRITEBYTECODE=1" in code, "no __pycache__ writes into the read-only root"
    assert "HOME=/tmp" in code, "kubernetes.aio works out ~ on import: a uid without a passwd entry needs HOME"


def _operator_sources():
    return sorted((ROOT / "operator" / "harper_operator").rglob("*.py"))


def test_operator_writes_only_to_tmp_and_needs_no_home_or_passwd():
    """The operator process (`run`) writes no file, or only through tempfile (in /tmp, the emptyDir); only the
    `crds --out` command, never run in the pod, writes elsewhere. Nothing reads HOME or the passwd database."""
    writers, temp_users = set(), set()
    for path in _operator_sources():
        text = path.read_text()
        rel = path.relative_to(ROOT / "operator" / "harper_operator").as_posix()
        if re.search(r"\.write_(text|bytes)\(|\bopen\([^)]*[\"'][wax]b?\+?[\"']|os\.fdopen\(|shutil\.copy", text):
            writers.add(rel)
        if re.search(r"\btempfile\.", text):
            temp_users.add(rel)
        for pattern in (r"expanduser|Path\.home\(|getpass|\bpwd\.|os\.environ(?:\.get)?\(\s*[\"']HOME",):
            assert not re.search(pattern, text), f"{rel} reads HOME or the passwd database"
    assert writers <= {"cli.py", "harper/tls.py"}, writers
    assert temp_users <= {"harper/tls.py"}, temp_users
