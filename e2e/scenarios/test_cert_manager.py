"""spec.tls.issuerRef against a real cert-manager: its own controllers (e2e/tools/cert-manager, built from the
module go.mod pins) and CRDs, on the test bed's real kube-apiserver, with the operator as a process.

The loopback control plane runs no kubelet, so no pod starts: what this proves is the contract with cert-manager,
the Certificates the operator writes (checked by cert-manager's own schema and issued by its CA issuer) and the
pods' Secret it fills from what cert-manager issued. Pods that start, mesh and serve on such certificates run on the
node (e2e/pods/test_provisioning_on_node.py::test_pods_serve_certificates_cert_manager_issued).
"""

from __future__ import annotations

import base64
import subprocess
from datetime import datetime, timezone

import pytest

from harper_operator.provision import pki, render
from harper_operator.provision.render import Owner, Place

from ..testbed import proc
from ..testbed.tools import ensure_cert_manager
from .kit import condition, wait_until


@pytest.fixture(scope="module")
def cert_manager(request, control_plane, testbed_tools, tmp_path_factory):
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the first build takes minutes: show it
        built = ensure_cert_manager()
    kubectl = [testbed_tools.kubectl, "--kubeconfig", control_plane.kubeconfig]
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(built.crds)], check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for", "condition=Established", "--timeout=60s",
                    *(f"crd/{kind}.cert-manager.io" for kind in ("certificates", "certificaterequests", "issuers",
                                                                 "clusterissuers"))],
                   check=True, capture_output=True)
    log = tmp_path_factory.mktemp("cert-manager") / "controller.log"
    controller = proc.spawn([built.controller, "--kubeconfig", control_plane.kubeconfig], log_path=log)
    yield log
    proc.stop(controller)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_pods_certificates_come_from_cert_manager_and_calls_trust_its_ca(cert_manager, operator, kube):
    ns = kube.namespace
    corp = pki.new_authority("corp", datetime.now(timezone.utc))
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "corp-ca"}, "type": "kubernetes.io/tls",
                "data": {"tls.crt": _b64(corp.certificate), "tls.key": _b64(corp.key)}},
               {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "corp"},
                "spec": {"ca": {"secretName": "corp-ca"}}})
    wait_until("the CA Issuer Ready", lambda: condition(kube.get("issuer", "corp") or {}, "Ready").get("status")
               == "True", timeout=60, diagnose=lambda: cert_manager.read_text()[-3000:])
    kube.apply({"apiVersion": "harperoperator.dev/v1alpha1", "kind": "HarperCluster", "metadata": {"name": "hc"},
                "spec": {"instances": {"image": "registry.invalid/harper:1", "replicas": 2},
                         "tls": {"issuerRef": {"name": "corp"}}, "reconcileIntervalSeconds": 5}})

    def issued() -> dict | None:
        tls = kube.get("secret", "hc-tls")
        return tls and {k: base64.b64decode(v).decode() for k, v in tls["data"].items()}
    files = wait_until("the pods' Secret filled from what cert-manager issued", issued, timeout=120,
                       diagnose=lambda: cert_manager.read_text()[-3000:] + kube.run(
                           "get", "certificates,certificaterequests,hc", "-o", "yaml", check=False).stdout[-4000:])
    owner, place = Owner(ns, "hc", "", "cluster.local"), Place("hc", "hc")
    for i in range(2):
        certificate = kube.get("certificate", f"hc-{i}-tls")
        assert condition(certificate, "Ready").get("status") == "True", certificate
        pair = pki.KeyPair(files[f"hc-{i}.crt"], files[f"hc-{i}.key"])
        assert pki.matches(pair) and pki.signed_by(pair.certificate, corp.certificate)
        assert set(render.certificate_names(owner, place, i)) <= pki.names(pair.certificate)
        # What cert-manager wrote is what the pods mount.
        theirs = kube.get("secret", f"hc-{i}-tls")
        assert base64.b64decode(theirs["data"]["tls.crt"]).decode() == pair.certificate
    assert pki.split(files["ca.crt"]) == [corp.certificate]  # the pods and the operator trust the issuer's CA
    assert kube.get("statefulset", "hc") is not None  # started only once every pod's certificate was there
    assert kube.get("secret", "hc-ca") is None  # no authority of the operator's own
    reasons = [e["reason"] for e in kube.events("hc")]
    assert "CertificatesIssued" in reasons and "CertificateAuthorityCreated" not in reasons

    # cert-manager renews (here: the Secret is removed, as a re-issue would replace it): the next round copies it.
    before = files["hc-1.crt"]
    kube.run("delete", "secret", "hc-1-tls")
    wait_until("a certificate cert-manager issued again reaches the pods' Secret",
               lambda: (issued() or {}).get("hc-1.crt") not in (None, before), timeout=120,
               diagnose=lambda: cert_manager.read_text()[-3000:])
    kube.delete("harpercluster", "hc")
