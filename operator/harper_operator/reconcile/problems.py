"""The one Problem value: why the operator must not, or cannot yet, make Harper match the spec.

The planner, the restart budget and the shell all speak it, so a status or an Event never has to translate
between two kinds of problem.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """A reason the shell must not (or cannot yet) make Harper match the spec.

    * permanent: True -> Stalled (a person must fix something); False -> Reconciling (it may pass by itself).
    * blocking: plan() leaves `node` alone, or the whole cluster when `node` is None.
    * message: one line for a person; it never holds a credential.
    """

    reason: str
    message: str
    node: str | None = None
    permanent: bool = True
    blocking: bool = True
