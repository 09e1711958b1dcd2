"""Issue 2's path, end to end: kubectl apply -> operator -> real Harper mesh -> status; delete -> remove_node."""

from __future__ import annotations

from . import kit


def test_three_nodes_become_one_replicating_cluster(kube, operator, harper_nodes):
    a, b, c = harper_nodes[:3]
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("trio"),
               *(kit.node(f"trio-{i}", "trio", h) for i, h in enumerate((a, b, c))))

    hc = kit.ready_with(kube, "harpercluster", "trio", "3/3", timeout=180)
    kit.wait_until("every node lists the 2 others connected", kit.mesh_is([a, b, c], kit.full_mesh([a, b, c])))

    # The status carries what cluster_status says, per member and per peer socket.
    rows = {m["hostname"]: m for m in hc["status"]["members"]}
    assert set(rows) == {a.name, b.name, c.name} and all(r["ready"] for r in rows.values())
    hn = kube.get("harpernode", "trio-0")
    assert hn["status"]["nodeName"] == a.name and hn["status"]["connectedPeers"] == "2/2"
    assert {p["name"] for p in hn["status"]["peers"]} == {b.name, c.name}
    assert all(s["connected"] for p in hn["status"]["peers"] for s in p["sockets"])

    # A record written on one node is read on another.
    kit.ensure_table([a, b, c], "data", "skeleton")
    key = kit.write_record(a, "data", "skeleton")
    kit.wait_until("record replicated a -> c", lambda: kit.has_record(c, "data", "skeleton", key), timeout=30)

    # Deleting a HarperNode takes it out of the cluster (deletionPolicy Delete -> remove_node).
    kube.delete("harpernode", "trio-2")
    kit.wait_until("a and b no longer list c", lambda: all(c.name not in kit.peers(n) for n in (a, b)), timeout=60)
    kit.ready_with(kube, "harpercluster", "trio", "2/2")
    reasons = {e["reason"] for e in kube.events("trio")}
    assert "AddNode" in reasons, reasons
