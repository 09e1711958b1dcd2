"""Route edits computed on the configuration file's own list (pure functions, no I/O).

Why not Harper's cluster_set_routes / cluster_delete_routes? On 4.7.29 both work on the copy of
`replication.routes` taken at start-up, not on the file, and compare object routes loosely:
- a node started without routes: each set REPLACES the file's routes with its own argument, and a
  delete deletes nothing it was asked for but writes an empty list (all routes gone, `deleted: []`);
- a node started with routes: a deleted route stays in that copy, so the next set writes it back;
- `{hostname, port}` routes match any other `{hostname}` route on the same port (skipped as a
  duplicate on set, deleted by mistake on delete).
So the client reads the file (get_configuration), edits the list here, and writes the whole list
back (set_configuration replication_routes). Entries it does not touch are kept verbatim, since
object routes may carry more than host and port (subscriptions, startTime, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .models import Route


def _parse(entry: Any) -> Route | None:
    try:
        return Route.model_validate(entry)
    except (ValueError, TypeError, RecursionError):  # ValidationError, or junk a validator tripped on
        return None  # unreadable entries are left alone, never dropped


def add_routes(current: list[Any], wanted: Iterable[Route]) -> tuple[list[Any], list[Route], list[Route]]:
    """(new list, added, skipped): append each wanted route the list does not hold yet."""
    present = {r for r in map(_parse, current) if r is not None}
    new, added, skipped = list(current), [], []
    for route in wanted:
        if route in present:
            skipped.append(route)
        else:
            present.add(route)
            new.append(route.to_wire())
            added.append(route)
    return new, added, skipped


def remove_routes(current: list[Any], unwanted: Iterable[Route]) -> tuple[list[Any], list[Route], list[Route]]:
    """(new list, deleted, skipped): drop every entry equal to an unwanted route, in any spelling."""
    targets = list(dict.fromkeys(unwanted))
    new, deleted = [], []
    for entry in current:
        route = _parse(entry)
        if route is not None and route in targets:
            if route not in deleted:
                deleted.append(route)
            continue
        new.append(entry)
    skipped = [r for r in targets if r not in deleted]
    return new, deleted, skipped
