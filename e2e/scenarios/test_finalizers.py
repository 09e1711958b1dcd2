"""Finalizers can always be released: with the Secret gone and then the cluster gone, nothing hangs."""

from __future__ import annotations

from . import kit


def test_deletion_never_hangs_when_secret_and_cluster_are_gone(kube, operator, harper_nodes):
    a, b = harper_nodes[:2]
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("fin"),
               kit.node("fin-a", "fin", a), kit.node("fin-b", "fin", b))
    kit.ready_with(kube, "harpercluster", "fin", "2/2")
    assert "harperoperator.dev/finalizer" in kube.get("harpercluster", "fin")["metadata"]["finalizers"]

    kube.run("delete", "secret", "harper-admin")
    hc = kit.wait_until("cluster Stalled on the missing Secret",
                        lambda: (lambda o: kit.condition(o, "Stalled").get("reason") == "SecretNotFound" and o)(
                            kube.get("harpercluster", "fin")), timeout=60)
    assert "harper-admin" in kit.condition(hc, "Stalled")["message"]

    kube.delete("harpercluster", "fin")  # --wait: returns only once the finalizer is released
    assert kube.get("harpercluster", "fin") is None
    kube.delete("harpernode", "fin-a")
    kube.delete("harpernode", "fin-b")
    assert kube.get("harpernode", "fin-a") is None and kube.get("harpernode", "fin-b") is None
