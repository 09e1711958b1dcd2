"""Kubernetes Events for writes and failures, posted through Kopf's queue, signed `harper-operator`."""

from __future__ import annotations

from typing import Any, Mapping

import kopf

from ..controller.dissolve import Removal

# The API server refuses Event messages over 1 KiB; Harper's errors can be far longer.
EVENT_MESSAGE_LIMIT = 1000

# Who the Events say posted them: core/v1 source.component (the "From" column of `kubectl describe`) and
# reportingComponent, which the newer Events API shows as reportingController. Kopf would say `kopf`.
# handlers/startup.configure gives these to Kopf's posting settings.
REPORTING_COMPONENT = "harper-operator"
REPORTING_INSTANCE_LIMIT = 128  # the API server's limit for reportingInstance


def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    if len(message) > EVENT_MESSAGE_LIMIT:
        message = message[:EVENT_MESSAGE_LIMIT - 3] + "..."
    kopf.event(body, type=type_, reason=reason, message=message)


def removals(body: Mapping[str, Any], removal: Removal, retry: int, retries: int | None = 3) -> None:
    """Report what a deletion did; retry failures a few times, then let the finalizer go so deletion never
    hangs, saying what Harper may still hold. retries=None: retry until it works (a provisioned member, whose pod
    and volume go once the finalizer is released: docs/safety.md, S1)."""
    for line in removal.done:
        post(body, "Normal", "RemoveNode", line)
    if removal.failures and (retries is None or retry < retries):
        if retries is None and retry % 6 == 5:  # every ~30 s: say why the scale-down is not done yet
            post(body, "Warning", "RemoveNodeRetrying", "; ".join(removal.failures) + " (its pod and volume stay "
                                                        "until Harper has forgotten it)")
        raise kopf.TemporaryError("; ".join(removal.failures), delay=5)
    for line in removal.failures:
        post(body, "Warning", "RemoveNodeFailed", line + " (finalizer released anyway)")
    for line in removal.left:
        post(body, "Warning", "RecordsLeft", line)
