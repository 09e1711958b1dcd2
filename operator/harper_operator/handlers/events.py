"""Kubernetes Events for writes and failures, posted through Kopf's queue."""

from __future__ import annotations

from typing import Any, Mapping

import kopf


def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    # Event messages are limited to 1 KiB by the API server; Harper's errors can be longer.
    kopf.event(body, type=type_, reason=reason, message=message[:1000])


def removals(body: Mapping[str, Any], done: list[str], failures: list[str], retry: int, retries: int = 3) -> None:
    """Report remove_node results; retry a few times, then let the finalizer go so deletion never hangs."""
    for line in done:
        post(body, "Normal", "RemoveNode", line)
    if failures and retry < retries:
        raise kopf.TemporaryError("; ".join(failures), delay=5)
    for line in failures:
        post(body, "Warning", "RemoveNodeFailed", line + " (finalizer released anyway)")
