"""The restart budget: which of the restarts the operator wants may run now. Pure: `now` is passed in.

Every restart the operator makes goes through admit(): those plan() asks for after its own writes (routes, a
re-created explicit pair) and those pending_restart() shows (reconnect, shard; see restarts_for_pending). A restart
takes a member out of replication for a while, so:

* one member down at a time (docs/safety.md, S3): none while any member does not answer or its pod is not Ready,
  whatever took it down (a restart of ours coming back, a roll, a crash): restarting another now would take two
  members out of replication at once;
* a restart wanted because of something merely observed (Restart.settle) waits until the picture has lasted
  `grace` seconds: a joining node shows the same picture for a moment;
* a member is not restarted twice within `cooldown`: when Harper still needs a restart right after one, the restart
  did not help, and restarting in a loop would only keep the member down. That is reported (RestartLoop, Stalled);
* a restart that follows a write of ours and is put off stays owed until it runs: nothing observable shows that a
  re-created explicit pair still runs its old table filter, so plan() asks for that restart only once.

The ledger outlives the process (the shell persists to_dict()), so `now` must be wall-clock seconds, not a
monotonic clock that starts again with the operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Collection, Iterable, Mapping, Sequence, TypeGuard

from .plan import AUTHORITY_RESTART, CERTIFICATE_RESTART, ROUTES_RESTART, Restart, forget_ca_reason
from .problems import Problem

# pending_restart() reasons a restart may be made for, as the words a message uses. "routes" alone waits for the
# restart policy of plan() (restart_for_routes); a node restarted for another reason loads them too.
_SETTLE_REASONS = {"reconnect": "reconnect to its peers", "shard": "drop the shard its spec clears",
                   "apart": "connect to a peer that it and the peer both show apart"}
# A pair apart waits longer than the default grace: a node that joins normally shows pairs down for ~20 s.
APART_GRACE = 60.0
# A member the operator added a moment ago is still connecting: for a while a member may show its own link to it, or
# to a peer it has just learnt of, down while the other side shows it up (seen in CI on 2026-12-07: a 4th node added
# through a seed showed a link down for 18 s under load, and was restarted for `reconnect` at the default grace).
# A restart for such a picture waits JOIN_GRACE after the operator's last join, but never more than JOIN_CAP after
# the picture began: a join that repeats every round must not hold a needed restart back for ever.
JOIN_GRACE = APART_GRACE
JOIN_CAP = 2 * JOIN_GRACE
_TRANSIENT = {"reconnect", "apart"}
_REASON_WORDS = {"routes": ROUTES_RESTART, **_SETTLE_REASONS}
_NO_REASON = "apply what Harper reads only at start-up"


def restarts_for_pending(pending: Mapping[str, str]) -> list[Restart]:
    """A settle=True Restart for each node whose pending_restart() reasons include reconnect or shard. Sorted."""
    out = []
    for node, why in sorted(pending.items()):
        reasons = [w.strip() for w in str(why).split(",") if w.strip()]
        if any(r in _SETTLE_REASONS for r in reasons):
            out.append(Restart(node, " and ".join(_REASON_WORDS.get(r, r) for r in reasons), settle=True,
                               grace=APART_GRACE if set(reasons) & set(_SETTLE_REASONS) == {"apart"} else None,
                               transient=set(reasons) <= _TRANSIENT))
    return out


# Seconds a peer goes on refusing a member's first join by cutting the socket before it is restarted for it: a join
# can fail once while the peer starts; one that fails the same way for this long will not mend by waiting.
REFUSED_JOIN_GRACE = 30.0


def restarts_for_refused_joins(refused: Mapping[tuple[str, str], float], now: float,
                               grace: float = REFUSED_JOIN_GRACE) -> list[Restart]:
    """refused: (member, peer) -> since when the peer cuts the member's first join (PeerFailure.closed_at_first_join).
    A Restart of each peer that has refused for `grace` seconds: it still trusts an old certificate authority of the
    member (wiped, back under its name), and only a restart makes Harper forget it (docs/harper-semantics.md,
    section 9). Nothing the operator reads shows that CA when no record of the old member is left, so the refusal
    itself is the evidence. settle: a guess from what was seen, never owed; the budget takes it one at a time and
    calls it RestartLoop when the restart did not help."""
    peers: dict[str, list[str]] = {}
    for (member, peer), since in sorted(refused.items()):
        if now - since >= grace:
            peers.setdefault(peer, []).append(member)
    return [Restart(peer, " and ".join(forget_ca_reason(m) for m in members), settle=True, grace=0.0)
            for peer, members in sorted(peers.items())]


# How long a pod may go on presenting an older certificate than the one issued to it before it is restarted: the
# kubelet updates a mounted Secret within about a minute (its sync period) and Harper reloads watched certificate
# files 1.5 s after a change.
CERTIFICATE_GRACE = 150.0


def restarts_for_unserved_certificates(unserved: Iterable[str], grace: float = CERTIFICATE_GRACE) -> list[Restart]:
    """A Restart of each member whose Harper presents another certificate than the one issued to it after it
    started: Harper 4.7.29 watches its certificate files, but on the node one pod of three missed the second of
    two updates in a row and kept the old one (docs/provisioning.md). settle: seen, so it must persist for `grace`;
    the budget takes one member at a time and calls it RestartLoop when a restart did not help."""
    return [Restart(host, CERTIFICATE_RESTART, settle=True, grace=grace) for host in sorted(set(unserved))]


def restarts_for_untrusted_authority(untrusting: Iterable[str], grace: float = CERTIFICATE_GRACE) -> list[Restart]:
    """A Restart of each member whose Harper does not list the cluster's new authority during a rollover: it reads
    the rewritten file of trusted authorities by itself (seen within seconds on loopback), unless it missed the
    update, as it can miss a certificate's; a new pod reads it at start-up. Until every member trusts the new
    authority, no pod is moved to a certificate it signs."""
    return [Restart(host, AUTHORITY_RESTART, settle=True, grace=grace) for host in sorted(set(untrusting))]


@dataclass(frozen=True)
class RestartLedger:
    """What the budget remembers between rounds. Replace it with admit()'s answer; never mutate it.

    * done: node -> (reason, when) of its last restart, kept for `cooldown`;
    * wanted_since: node -> when a restart of it was first wanted, without a break, and not yet made;
    * owed: node -> reasons of restarts that follow a write of ours and were put off (see the module docstring).
    """

    done: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    wanted_since: Mapping[str, float] = field(default_factory=dict)
    owed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly; from_dict() reads it back."""
        return {
            "done": {n: {"reason": r, "at": t} for n, (r, t) in sorted(self.done.items())},
            "wantedSince": dict(sorted(self.wanted_since.items())),
            "owed": {n: list(rs) for n, rs in sorted(self.owed.items())},
        }

    @classmethod
    def from_dict(cls, data: Any) -> "RestartLedger":
        """Read to_dict()'s form back. Never raises: the ledger is stored where people can edit it, so anything
        malformed is dropped (the whole ledger when nothing is a mapping), which at worst allows one restart early.
        """
        if not isinstance(data, Mapping):
            return cls()
        done: dict[str, tuple[str, float]] = {}
        for node, entry in _items(data.get("done")):
            if isinstance(entry, Mapping):
                reason, when = entry.get("reason"), entry.get("at")
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                reason, when = entry
            else:
                continue
            if isinstance(reason, str) and _time(when):
                done[node] = (reason, float(when))
        since = {node: float(t) for node, t in _items(data.get("wantedSince")) if _time(t)}
        owed = {}
        for node, reasons in _items(data.get("owed")):
            if isinstance(reasons, (list, tuple)) and reasons and all(isinstance(r, str) for r in reasons):
                owed[node] = tuple(reasons)
        return cls(done=done, wanted_since=since, owed=owed)

    def only(self, nodes: Collection[str]) -> "RestartLedger":
        """The ledger without the nodes that left the cluster (an owed restart of a deleted member never runs)."""
        keep = set(nodes)
        return RestartLedger(done={n: v for n, v in self.done.items() if n in keep},
                             wanted_since={n: v for n, v in self.wanted_since.items() if n in keep},
                             owed={n: v for n, v in self.owed.items() if n in keep})


def _items(value: Any) -> list[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        return []
    return [(k, v) for k, v in value.items() if isinstance(k, str) and k]


def _time(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _merge(node: str, wishes: Sequence[Restart]) -> Restart:
    """One restart per node serves every reason; it may wait for settling only when every reason may."""
    reasons = sorted({w.reason for w in wishes if w.reason})
    graces = [w.grace for w in wishes if w.settle]
    settle = all(w.settle for w in wishes)
    return Restart(node, " and ".join(reasons) or _NO_REASON, settle=settle,
                   grace=None if None in graces or not graces else min(g for g in graces if g is not None),
                   transient=settle and all(w.transient for w in wishes))


def _grace(want: Restart, default: float) -> float:
    return default if want.grace is None else want.grace


def _settled_at(want: Restart, since: float, grace: float, joined_at: float | None) -> float:
    """When a settle restart wanted since `since` may run: after its grace, and a transient one also after the last
    join has had JOIN_GRACE (capped at JOIN_CAP after `since`)."""
    at = since + _grace(want, grace)
    if want.transient and joined_at is not None:
        at = max(at, min(joined_at + JOIN_GRACE, since + JOIN_CAP))
    return at


def admit(ledger: RestartLedger, wanted: Sequence[Restart], now: float, *, unreachable: Collection[str] = (),
          unmanaged: Collection[str] = (), grace: float = 10.0, cooldown: float = 120.0,
          changed_at: Mapping[str, float] | None = None,
          joined_at: float | None = None) -> tuple[list[Restart], list[Problem], RestartLedger]:
    """The restarts to run now (at most one), the problems to report, and the ledger for the next call.

    wanted: every restart wanted this round (plan()'s and restarts_for_pending()'s); owed ones are added.
    unreachable: the members that are down this round (no answer, or a pod that is not Ready).
    unmanaged: the members the operator cannot write to this round (a Secret it could not read, a HarperNode being
    deleted): never admitted, their restarts stay owed. Whether they hold the others back is `unreachable`'s say.
    changed_at: node -> when ANOTHER member last came back as a new pod that no restart of the operator's made (a
    roll, a crash, a pod deleted by hand): a new address, so the node's restarts made before it are no evidence of
    a loop (seen: a rolling update replaced a pod 59 s after a survivor's reconnect restart, and the survivor's next
    reconnect was called a RestartLoop, Stalled). The shell excludes the pods of its own restarts: counting those
    reset the cooldown at every restart (seen: one pod deleted 8 times in 105 s, and no RestartLoop).
    joined_at: when the operator last added a member (a successful add_node); None: not since this process began.
    """
    down = set(unreachable)
    wishes: dict[str, list[Restart]] = {}
    for node, reasons in ledger.owed.items():
        wishes.setdefault(node, []).extend(Restart(node, r) for r in reasons)
    for r in wanted:
        wishes.setdefault(r.on, []).append(r)
    merged = {node: _merge(node, ws) for node, ws in sorted(wishes.items())}

    # Restarts within the cooldown. One stamped further ahead than a whole cooldown comes from another clock
    # (the ledger was written elsewhere): trusting it could hold a node back for ever.
    changed = changed_at or {}
    recent = {n: (r, t) for n, (r, t) in ledger.done.items() if t <= now + cooldown and now - t < cooldown
              and t >= changed.get(n, t)}
    since = {n: min(ledger.wanted_since.get(n, now), now) for n in merged}

    problems = []
    for node, want in merged.items():
        # A settling need right after a restart is the node coming back (reconnecting takes a moment): only one
        # that outlasts the grace period says the restart did not help.
        # A need for another reason (a spec changed since, say) is no loop: it waits out the cooldown quietly
        # (seen: a shard cleared 93 s after a reconnect restart was reported as RestartLoop, Stalled).
        if (node in recent and (not want.settle or now >= _settled_at(want, since[node], grace, joined_at))
                and set(want.reason.split(" and ")) & set(recent[node][0].split(" and "))):
            reason, when = recent[node]
            problems.append(Problem(
                "RestartLoop",
                f"{node} was restarted {max(0.0, now - when):.0f}s ago to {reason}, and Harper still needs a restart "
                f"({want.reason}): the restart did not take effect; check the node's logs and configuration (the "
                f"operator tries again after {cooldown:.0f}s)", node=node, permanent=True))

    eligible = [n for n, want in merged.items()
                if n not in recent and n not in down and n not in unmanaged
                and (not want.settle or now >= _settled_at(want, since[n], grace, joined_at))]
    admitted = [merged[eligible[0]]] if eligible and not down else []

    made = {r.on for r in admitted}
    done = dict(recent)
    done.update((r.on, (r.reason, now)) for r in admitted)
    owed = {}
    for node, ws in wishes.items():
        reasons = tuple(sorted({w.reason or _NO_REASON for w in ws if not w.settle}))
        if reasons and node not in made:
            owed[node] = reasons
    return admitted, problems, RestartLedger(
        done=dict(sorted(done.items())),
        wanted_since={n: t for n, t in since.items() if n not in made},
        owed=dict(sorted(owed.items())))


def next_admission(ledger: RestartLedger, wanted: Sequence[Restart], now: float, *, grace: float = 10.0,
                   cooldown: float = 120.0, joined_at: float | None = None) -> float | None:
    """Seconds until the soonest restart wanted now but held back by its grace or its node's cooldown could be
    admitted; None when none waits for either. `ledger`: what admit() returned for `wanted` at `now`.

    A round that ends with a restart waiting otherwise sleeps its whole back-off (2 s, then 4, then up to the
    interval), and the restart came up to a back-off after its grace (bench/drift.py)."""
    wishes: dict[str, list[Restart]] = {}
    for r in wanted:
        wishes.setdefault(r.on, []).append(r)
    due = []
    for node, ws in wishes.items():
        since = ledger.wanted_since.get(node)
        if since is None:
            continue  # admitted now, or wanted without a grace
        want = _merge(node, ws)
        at = _settled_at(want, since, grace, joined_at) if want.settle else now
        if node in ledger.done:
            at = max(at, ledger.done[node][1] + cooldown)
        if at > now:
            due.append(at - now)
    return min(due) if due else None


def settle_restarts(before: RestartLedger, after: RestartLedger, admitted: list[Restart],
                    ran: set[str]) -> RestartLedger:
    """admit() books its restarts as made; one that did not run (failed, skipped, round cut short) is owed
    again and keeps its old cooldown entry."""
    done, owed = dict(after.done), dict(after.owed)
    for r in admitted:
        if r.on in ran:
            continue
        if r.on in before.done:
            done[r.on] = before.done[r.on]
        else:
            done.pop(r.on, None)
        if not r.settle:
            owed[r.on] = tuple(sorted({*owed.get(r.on, ()), r.reason}))
    return replace(after, done=done, owed=owed)
