"""What a hostile cluster_status costs the operator: peak RSS growth, before and after answer budgets (issue 21).

    python bench/hostile_answer.py                 # 30 MiB and 4 MiB answers, four shapes, the largest allowed
    python bench/hostile_answer.py --mib 30 --shape "empty peers"

Every figure comes from a fresh subprocess (ru_maxrss grows only, so one process per measurement):
  before  the old way: json.loads of the whole body, then ClusterStatus.model_validate (what the client did with
          any answer under its 32 MiB byte cap); its address space is limited to --limit-mib, so a shape that
          would take more reports MemoryError instead of taking the machine down;
  after   HarperClient.cluster_status() against a server in yet another process that sends the same body
          (chunked, no Content-Length): the bytes read, the budget check, the error it raises; plus the
          tracemalloc peak of that read.
Numbers, not pass/fail; written to bench/results/hostile_answer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "hostile_answer.json"
MIB = 1024 * 1024

# name -> (head, repeated unit, tail): each unit a costly Python object once parsed.
SHAPES = {
    "empty peers": (b'{"connections":[', b"{},", b"{}]}"),
    "empty sockets": (b'{"connections":[{"database_sockets":[', b"{},", b"{}]}]}"),
    "empty lists": (b'{"connections":[', b"[],", b"[]]}"),
    "short strings": (b'{"connections":[{"database_sockets":[{"nodes":[', b'"a",', b'"a"]}]}]}'),
}


ALLOWED = "largest allowed"  # the costliest answer the budget lets through: parsed, not refused


def largest_allowed() -> bytes:
    """Empty database sockets (the costliest model) up to the container budget, short strings up to the commas'."""
    from harper_operator.harper.client import STATUS_BUDGET

    sockets = STATUS_BUDGET.containers - 8
    strings = STATUS_BUDGET.commas - sockets - 8
    return (b'{"connections":[{"database_sockets":[' + b"{}," * (sockets - 1) + b'{"nodes":['
            + b'"a",' * strings + b'"a"]}]}]}')


def hostile(shape: str, mib: float) -> bytes:
    if shape == ALLOWED:
        return largest_allowed()
    head, unit, tail = SHAPES[shape]
    size = int(mib * MIB)
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# --------------------------------------------------------------------------- subprocess roles

def measure_old(shape: str, mib: float, limit_mib: int) -> dict:
    from harper_operator.harper.models import ClusterStatus

    raw = hostile(shape, mib)
    resource.setrlimit(resource.RLIMIT_AS, (limit_mib * MIB, limit_mib * MIB))
    before = peak_rss_bytes()
    started = time.perf_counter()
    try:
        ClusterStatus.model_validate(json.loads(raw.decode("utf-8")))
        outcome = "parsed"
    except MemoryError:
        outcome = f"MemoryError (address space limited to {limit_mib} MiB)"
    except Exception as exc:  # noqa: BLE001 - a validation error is an outcome here, reported as such
        outcome = type(exc).__name__
    return {"rss_growth_mib": round((peak_rss_bytes() - before) / MIB, 1), "outcome": outcome,
            "seconds": round(time.perf_counter() - started, 2)}


def measure_new(url: str) -> dict:
    import tracemalloc

    from harper_operator.harper import HarperClient, HarperError

    async def read() -> str:
        async with HarperClient(url, username="admin", password="bench-only", timeout=60) as client:
            try:
                await client.cluster_status()
                return "parsed"
            except HarperError as exc:
                return f"{type(exc).__name__}: {exc.message}"

    asyncio.run(asyncio.sleep(0))  # import and set up asyncio before the baseline
    before = peak_rss_bytes()
    tracemalloc.start()
    started = time.perf_counter()
    outcome = asyncio.run(read())
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rss_growth_mib": round((peak_rss_bytes() - before) / MIB, 1), "outcome": outcome,
            "tracemalloc_peak_mib": round(traced_peak / MIB, 1), "seconds": round(seconds, 2)}


def serve(shape: str, mib: float) -> None:
    from aiohttp import web

    body = hostile(shape, mib)

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for start in range(0, len(body), 64 * 1024):
                await resp.write(body[start:start + 64 * 1024])
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client stopped reading at its cap
            pass
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- orchestration

def run_role(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:  # e.g. pydantic's Rust core aborts when the address-space limit is hit
        return {"outcome": f"process died (exit {done.returncode}), likely at the address-space limit"}
    return json.loads(done.stdout)


def measure(shape: str, mib: float, limit_mib: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    server = subprocess.Popen([sys.executable, __file__, "--role", "serve", "--shape", shape, "--mib", str(mib)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(server.stdout.readline())
        after = run_role("--role", "new", "--url", f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait()
    before = run_role("--role", "old", "--shape", shape, "--mib", str(mib), "--limit-mib", str(limit_mib))
    return {"shape": shape, "mib": mib, "before": before, "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, action="append", help="answer size in MiB (default: 30 and 4)")
    parser.add_argument("--shape", action="append", choices=[*sorted(SHAPES), ALLOWED], help="default: all")
    parser.add_argument("--limit-mib", type=int, default=4096, help="address space of the 'before' process")
    parser.add_argument("--role", choices=("old", "new", "serve"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "serve":
        return serve(args.shape[0], args.mib[0])
    if args.role == "old":
        return print(json.dumps(measure_old(args.shape[0], args.mib[0], args.limit_mib)))
    if args.role == "new":
        return print(json.dumps(measure_new(args.url)))

    rows = [measure(shape, mib, args.limit_mib) for mib in (args.mib or [30.0, 4.0])
            for shape in (args.shape or list(SHAPES)) if shape != ALLOWED]
    if not args.shape or ALLOWED in args.shape:
        rows.append(measure(ALLOWED, len(largest_allowed()) / MIB, args.limit_mib))
    print(f"{'answer':<24} {'before: RSS growth':>20}  {'after: RSS growth':>17} {'traced':>8}  after: outcome")
    for row in rows:
        before, after = row["before"], row["after"]
        print(f"{row['shape'] + ' ' + format(row['mib'], '.3g') + ' MiB':<24} "
              f"{before.get('rss_growth_mib', '?'):>16} MiB  {after.get('rss_growth_mib', '?'):>13} MiB "
              f"{after.get('tracemalloc_peak_mib', '?'):>4} MiB  {after['outcome'][:70]}")
        if not before["outcome"].startswith("parsed"):
            print(f"{'':<24} (before: {before['outcome']})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "machine": platform.machine(), "rows": rows}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
