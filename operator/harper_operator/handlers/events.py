"""Kubernetes Events for writes and failures, posted through Kopf's queue."""

from __future__ import annotations

from typing import Any, Mapping

import kopf


def post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    # Event messages are limited to 1 KiB by the API server; Harper's errors can be longer.
    kopf.event(body, type=type_, reason=reason, message=message[:1000])
