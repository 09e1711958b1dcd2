"""Run (step, fault) pairs through a world and fold the rows into the issue's table.

A row's clock starts when the fault is over: "time to Ready" is the operator's and Harper's recovery, not the
fault's own length. Writes are counted from the operator's log ("Harper write:" lines survive a SIGKILL), and
"beyond the minimum" compares each step with the same step run without a fault in the same run.
"""

from __future__ import annotations

import datetime
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

from ..scenarios.kit import wait_until
from . import truth
from .faults import BY_NAME, NoFault

READY_TIMEOUT = 300   # after the fault is over; a real recovery takes seconds to a minute or two
MESH_TIMEOUT = 60     # Harper's sockets may lag the status by a round
DATA_TIMEOUT = 30    # a record reaches every member within this, or is counted late
LOST_AFTER = 120     # ... and lost when it has not arrived after this


@dataclass
class Row:
    lifecycle: int
    step: str
    fault: str
    moment: str = ""
    did: str = ""
    converged: bool = False
    to_ready_s: float | None = None      # from the end of the fault
    apply_to_ready_s: float | None = None
    writes: list[str] = field(default_factory=list)
    ghosts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    wrong_statuses: list[str] = field(default_factory=list)
    records_left: list[str] = field(default_factory=list)  # what the operator said it left (deletion)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.converged and not (self.ghosts or self.missing or self.lost or self.wrong_statuses)


def schedule(faults: Sequence[str], rounds: int, steps: int, rng: random.Random, baseline: bool) -> list[list[str]]:
    """Lifecycles of `steps` slots: every fault `rounds` times, shuffled; free slots get no fault. With
    `baseline`, one lifecycle without faults comes first (the writes each step needs)."""
    pool = [f for f in faults for _ in range(rounds)]
    rng.shuffle(pool)
    out = [["none"] * steps] if baseline else []
    while pool:
        chunk, pool = pool[:steps], pool[steps:]
        out.append(chunk + ["none"] * (steps - len(chunk)))
    return out


def _moment(world, rng: random.Random, mark: int) -> str:
    """Somewhere in the reconcile the step started: shortly after the change, or just after its first write."""
    if rng.random() < 0.5:
        delay = rng.uniform(0, 2)
        time.sleep(delay)
        return f"{delay:.2f}s after the change"
    try:
        wait_until("the step's first write", lambda: world.writes_since(mark), timeout=20, interval=0.05)
    except AssertionError:
        return "no write within 20s"
    delay = rng.uniform(0, 0.5)
    time.sleep(delay)
    return f"{delay:.2f}s after the first write"


def _ready(world, since: datetime.datetime) -> bool:
    """Ready at the generation, every member ready, in a status written by a round that began after the fault
    (a Ready from before it says nothing about the recovery)."""
    cluster, nodes = world.statuses()
    size = len(world.spec)
    if not (truth.ready_at_generation(cluster) and cluster["status"].get("readyNodes") == f"{size}/{size}"
            and all(truth.ready_at_generation(n) for n in nodes.values())):
        return False
    return world.reconciled_since(since.timestamp())


def _settle(world, row: Row) -> None:
    """Harper's truth once the status says Ready: records, sockets and every record written so far."""
    names = world.member_names()

    def meshed():
        t = truth.harper(world.calls(), world.expected())
        return t if t.healthy else False
    try:
        wait_until("Harper meshed as declared", meshed, timeout=MESH_TIMEOUT, interval=1)
    except AssertionError:
        pass
    t = truth.harper(world.calls(), world.expected(), world.keys_for(names))
    row.ghosts, row.missing, row.disconnected, row.lost = t.ghosts, t.missing, t.disconnected, t.lost
    row.notes += [f"shard: {x}" for x in t.shards]
    row.notes += t.unanswered


def _sample_statuses(world, row: Row) -> None:
    """Three looks, a round apart: the status and Harper must agree. A status is written once a round, so one
    that disagrees at a single look is a round behind (a note); disagreeing at two looks in a row is wrong."""
    size = len(world.spec)
    looks = []
    for wait in (0, world.interval + 1, world.interval + 1):
        time.sleep(wait)
        t = truth.harper(world.calls(), world.expected())
        cluster, nodes = world.statuses()
        looks.append(truth.status_lies(cluster, nodes, t, size))
    for i, lies in enumerate(looks):
        if lies and ((i > 0 and looks[i - 1]) or (i + 1 < len(looks) and looks[i + 1])):
            row.wrong_statuses += lies
        elif lies:
            row.notes.append(f"a status a round behind Harper at look {i + 1}: {lies[0][:300]}")


def _post_key(world, row: Row, rng: random.Random) -> None:
    """A record written once the status says Ready must reach every member: within DATA_TIMEOUT, or it is
    counted late; not within LOST_AFTER, lost."""
    key = world.write_key(rng)
    members = world.calls()
    started = time.monotonic()
    everywhere = lambda: all(truth.has_record(c, key) for c in members.values())  # noqa: E731
    try:
        wait_until("a record written after the fault on every member", everywhere, timeout=LOST_AFTER)
    except AssertionError:
        row.lost += [f"{key} written on {world.writers[key]} after Ready, not on {n} after {LOST_AFTER}s"
                     for n, c in members.items() if not truth.has_record(c, key)]
        return
    took = time.monotonic() - started
    if took > DATA_TIMEOUT:
        row.notes.append(f"late: {key} written on {world.writers[key]} reached every member after {took:.0f}s")


def run_step(world, step, fault, index: int, rng: random.Random) -> Row:
    row = Row(index, step.name, fault.name)
    if world.spec and step.name != "create":  # a record in place before the fault, replicated everywhere
        key = world.write_key(rng)
        members = world.calls()
        try:
            wait_until("the record before the fault", lambda: all(truth.has_record(c, key) for c in members.values()),
                       timeout=DATA_TIMEOUT)
        except AssertionError:
            row.notes.append(f"{key} had not reached every member before the step (a slow previous step)")
    mark = world.log_mark()
    former = world.member_names()
    applied = time.monotonic()
    step.apply(world)
    row.moment = "-" if isinstance(fault, NoFault) else _moment(world, rng, mark)
    row.did = fault.inject(world, rng)
    row.wrong_statuses += [d for d in world.during if d]
    world.during.clear()
    over = time.monotonic()
    over_wall = datetime.datetime.now(datetime.timezone.utc)
    if step.deletes_cluster:
        try:
            wait_until("the cluster gone", world.cluster_gone, timeout=READY_TIMEOUT, interval=0.5)
            row.converged = True
        except AssertionError:
            row.notes.append(f"not gone: {world.describe()}")
        t = world.after_deletion(former)
        row.ghosts, row.missing, row.records_left = t.ghosts, t.missing, world.records_left_events()
        row.notes += t.unanswered
    else:
        try:
            wait_until("Ready", lambda: _ready(world, over_wall), timeout=READY_TIMEOUT, interval=0.25)
            row.converged = True
        except AssertionError:
            row.notes.append(f"not Ready: {world.describe()}")
    end = time.monotonic()
    if row.converged:
        row.to_ready_s, row.apply_to_ready_s = round(end - over, 2), round(end - applied, 2)
    if not step.deletes_cluster:
        _settle(world, row)
        if row.converged:
            _sample_statuses(world, row)
            _post_key(world, row, rng)
    row.writes = world.writes_since(mark)
    if not row.clean:
        row.notes.append("operator log:\n" + world.log_since(mark))
    return row


def run(world, lifecycles: Iterable[list[str]], steps, rng: random.Random,
        report: Callable[[Row], None] = lambda row: None) -> list[Row]:
    rows: list[Row] = []
    for index, slots in enumerate(lifecycles):
        world.prepare()
        try:
            for step, name in zip(steps, slots):
                try:
                    row = run_step(world, step, BY_NAME[name], index, rng)
                except truth.Unanswered as e:  # no member answered at all: record it, end this lifecycle
                    row = Row(index, step.name, name, notes=[f"harness stopped: {e}"])
                rows.append(row)
                report(row)
                if not row.converged:
                    break  # the next steps would measure this one's failure again
        finally:
            world.finish()
    return rows


def summarise(rows: list[Row]) -> list[dict]:
    """One line per fault: the issue's columns."""
    baseline: dict[str, int] = {}
    for r in rows:
        if r.fault == "none" and r.converged:
            n = len(r.writes)
            baseline[r.step] = min(baseline.get(r.step, n), n)
    out = []
    for fault in dict.fromkeys(r.fault for r in rows):
        mine = [r for r in rows if r.fault == fault]
        times = [r.to_ready_s for r in mine if r.to_ready_s is not None]
        extra = [len(r.writes) - baseline[r.step] for r in mine if r.step in baseline]
        out.append({
            "fault": fault, "runs": len(mine), "converged": sum(r.converged for r in mine),
            "median_to_ready_s": round(statistics.median(times), 1) if times else None,
            "worst_to_ready_s": round(max(times), 1) if times else None,
            "writes_beyond_minimum": sum(max(0, x) for x in extra),
            "ghosts": sum(len(r.ghosts) for r in mine), "missing": sum(len(r.missing) for r in mine),
            "lost": sum(len(r.lost) for r in mine), "wrong_statuses": sum(len(r.wrong_statuses) for r in mine),
            "records_left_said": sum(len(r.records_left) for r in mine),
        })
    return out


COLUMNS = ("fault", "runs", "converged", "median_to_ready_s", "worst_to_ready_s", "writes_beyond_minimum", "ghosts",
           "missing", "lost", "wrong_statuses", "records_left_said")


def table(summary: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join("-" if s[c] is None else str(s[c]) for c in COLUMNS) + " |\n"
                          for s in summary)


def as_dict(row: Row) -> dict:
    return asdict(row)
