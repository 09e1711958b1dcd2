"""Ready / Reconciling / Stalled conditions, Kubernetes style: pure, `now` is passed in.

Rules (kstatus conventions):
* a permanent problem (bad credentials, an impossible spec)  -> Stalled=True,  Reconciling=False, Ready=False
* a transient problem or work still to do                     -> Reconciling=True, Stalled=False, Ready=False
* paused with work to do                                      -> Reconciling=True with reason Paused, Ready=False,
                                                                 Stalled=False (nothing is written to Harper)
* nothing to do and verified (paused or not)                  -> Ready=True
* hibernated (spec.instances.replicas 0, every pod stopped)   -> reason Hibernated, Reconciling=False,
                                                                 Stalled=False; the cluster Ready=True (it is as
                                                                 declared: kstatus Current, no alert), its members
                                                                 Ready=False (no Harper runs)
kstatus (Flux's health checks) reads Reconciling=True as InProgress: a paused resource with work left is not done,
and a Kustomization waiting on it waits (and times out) rather than passing. Paused with nothing to do is Ready,
so Current: Harper matches the spec, and the pause only holds back writes that nobody needs yet.
lastTransitionTime is kept from `previous` while a condition's status does not change.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from .problems import Problem

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"


def _stamp(now: datetime | str) -> str:
    if isinstance(now, str):
        return now
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, status: bool, reason: str, message: str, *, generation: int | None,
              previous: Iterable[Mapping[str, Any]] = (), now: datetime | str) -> dict[str, Any]:
    """One condition as a camelCase dict; lastTransitionTime kept when `previous` had the same status."""
    value = "True" if status else "False"
    stamp = _stamp(now)
    for p in previous or ():
        if p.get("type") == type_ and p.get("status") == value and p.get("lastTransitionTime"):
            stamp = p["lastTransitionTime"]
            break
    out: dict[str, Any] = {"type": type_, "status": value, "reason": reason, "message": message,
                           "lastTransitionTime": stamp}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def conditions(*, problem: Problem | None = None, busy: bool = False, paused: bool = False,
               ready_reason: str = "Ready", ready_message: str = "", generation: int | None = None,
               previous: Iterable[Mapping[str, Any]] = (), now: datetime | str) -> list[dict[str, Any]]:
    """The three conditions from one round's outcome. `busy`: writes planned or a transient problem."""
    previous = list(previous or ())

    def c(t: str, s: bool, r: str, m: str) -> dict[str, Any]:
        return condition(t, s, r, m, generation=generation, previous=previous, now=now)

    if problem is not None and problem.permanent:
        return [c(READY, False, problem.reason, problem.message),
                c(RECONCILING, False, problem.reason, "stopped: fix the cause below; the operator retries on change"),
                c(STALLED, True, problem.reason, problem.message)]
    if paused and (busy or problem is not None):
        msg = ("writes to Harper are paused by annotation: the work still to do waits until it is removed; "
               "status still refreshes")
        if problem is not None:
            msg += f" ({problem.message})"
        return [c(READY, False, "Paused", msg), c(RECONCILING, True, "Paused", msg),
                c(STALLED, False, "Paused", "no permanent problem")]
    if problem is not None or busy:
        reason = problem.reason if problem is not None else "Progressing"
        message = problem.message if problem is not None else "operations are being applied to Harper"
        return [c(READY, False, reason, message), c(RECONCILING, True, reason, message),
                c(STALLED, False, reason, "no permanent problem")]
    return [c(READY, True, ready_reason, ready_message),
            c(RECONCILING, False, ready_reason, "nothing to do"),
            c(STALLED, False, ready_reason, "no permanent problem")]


HIBERNATED = "Hibernated"


def hibernated(*, ready: bool, message: str, generation: int | None = None,
               previous: Iterable[Mapping[str, Any]] = (), now: datetime | str) -> list[dict[str, Any]]:
    """The three conditions of a hibernated cluster (ready=True) or of one of its members (ready=False)."""
    previous = list(previous or ())

    def c(t: str, s: bool, m: str) -> dict[str, Any]:
        return condition(t, s, HIBERNATED, m, generation=generation, previous=previous, now=now)

    return [c(READY, ready, message), c(RECONCILING, False, "nothing to do while hibernated"),
            c(STALLED, False, "no permanent problem")]
