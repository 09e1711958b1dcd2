"""A HarperNode deleted by hand leaves Harper only once its records are on the members that stay (docs/safety.md,
S1), on the real test bed: real kube-apiserver, real Harper nodes, a real iptables cut of one node's replication
port (its operations API still answers, so the operator can read what it holds)."""

from __future__ import annotations

import time

from ..testbed import netcut
from . import kit

INTERVAL = 5
REPLICATION_PORT = 9933
DATABASE, TABLE = "data", "leaving"


def _waiting_events(kube, name: str) -> list[str]:
    return [e["message"] for e in kube.events(name) if e["reason"] == "WaitingForReplication"]


def test_a_node_deleted_while_cut_off_keeps_its_record_until_the_others_hold_it(kube, operator, harper_nodes):
    a, b, c = harper_nodes[:3]
    kit.ensure_table([a, b, c], DATABASE, TABLE)
    kube.apply(kit.secret("harper-admin", a.username, a.password), kit.cluster("leave", interval=INTERVAL),
               *(kit.node(f"leave-{x.name.split('.')[-1]}", "leave", x) for x in (a, b, c)))
    kit.ready_with(kube, "harpercluster", "leave", "3/3")
    kit.wait_until("3-node mesh", kit.mesh_is([a, b, c], kit.full_mesh([a, b, c])))
    gone = f"leave-{c.name.split('.')[-1]}"

    with netcut.Cut(c.ip, REPLICATION_PORT):
        key = kit.write_record(c, DATABASE, TABLE)  # on c alone: nobody can receive it while the cut lasts
        kube.run("delete", "harpernode", gone, "--wait=false")
        said = kit.wait_until("the finalizer says what it waits for", lambda: _waiting_events(kube, gone),
                              timeout=60)
        assert c.name in said[0] and "leave-without-proof" in said[0], said
        time.sleep(3 * INTERVAL)  # rounds enough for a removal that did not wait
        assert kube.get("harpernode", gone) is not None, "the HarperNode left while its record was on it alone"
        assert c.name in kit.peers(a) and c.name in kit.peers(b), "Harper forgot c while its record was on it alone"
        assert not kit.has_record(a, DATABASE, TABLE, key), "the cut did not hold the record back"

    # Healed: c's record reaches a and b by replication, then the finalizer lets Harper forget c.
    kit.wait_until("the HarperNode gone", lambda: kube.get("harpernode", gone) is None, timeout=180)
    assert kit.has_record(a, DATABASE, TABLE, key) and kit.has_record(b, DATABASE, TABLE, key)
    kit.wait_until("c gone from a and b", lambda: c.name not in kit.peers(a) and c.name not in kit.peers(b),
                   timeout=60)
    kit.ready_with(kube, "harpercluster", "leave", "2/2")
