"""Latency of HarperClient read operations against a real Harper node, next to curl.

    python bench/client_latency.py                 # starts its own 2-node fleet (e2e.testbed)
    python bench/client_latency.py --url http://127.0.0.11:9925 --user admin --password-file pw

For each read (cluster_status, cluster_get_routes, loaded_routes, get_configuration, health) it
times N sequential calls through one HarperClient (one pooled keep-alive connection, JSON parsing
and pydantic models included) and N of the same HTTP request made by `curl` in a subprocess.
curl is reported twice: wall time (what shelling out would cost, process start included) and its
own time_total (the HTTP exchange alone, a fresh connection each time). Numbers, not pass/fail.
Writes: none against --url; a self-started fleet is joined once (add_node) so cluster_status
has a peer to report, and is thrown away afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for e2e.testbed when run as a script

from harper_operator.harper import Authorization, HarperClient, NodeRequest  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "client_latency.json"

# name -> (client coroutine factory, the request curl makes: None body = GET /health)
OPERATIONS = {
    "cluster_status": (lambda c: c.cluster_status(), {"operation": "cluster_status"}),
    "cluster_get_routes": (lambda c: c.cluster_get_routes(), {"operation": "get_configuration"}),
    "loaded_routes": (lambda c: c.loaded_routes(), {"operation": "cluster_get_routes"}),
    "get_configuration": (lambda c: c.get_configuration(), {"operation": "get_configuration"}),
    "health": (lambda c: c.health(), None),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def time_client(client: HarperClient, name: str, n: int, warmup: int) -> list[float]:
    call = OPERATIONS[name][0]
    for _ in range(warmup):
        await call(client)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call(client)
        samples.append(time.perf_counter() - start)
    return samples


def time_curl(url: str, user: str, password: str, name: str, n: int, warmup: int) -> tuple[list[float], list[float]]:
    body = OPERATIONS[name][1]
    # Credentials go through a config on stdin (-K -), never on the command line (ps would show them).
    config = f'user = "{user}:{password}"\n'
    if body is None:
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-K", "-", url.rstrip("/") + "/health"]
    else:
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-K", "-", "-H", "Content-Type: application/json",
               "-d", json.dumps(body), url.rstrip("/") + "/"]
    wall, total = [], []
    for i in range(warmup + n):
        start = time.perf_counter()
        done = subprocess.run(cmd, input=config, capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            wall.append(elapsed)
            total.append(float(done.stdout))
    return wall, total


async def run(url: str, user: str, password: str, n: int, warmup: int) -> dict:
    results = {}
    async with HarperClient(url, username=user, password=password, timeout=10) as client:
        if not await client.health():
            raise SystemExit(f"{url} is not healthy")
        for name in OPERATIONS:
            client_s = await time_client(client, name, n, warmup)
            wall_s, total_s = await asyncio.to_thread(time_curl, url, user, password, name, n, warmup)
            results[name] = {
                "client_p50_ms": statistics.median(client_s) * 1000,
                "client_p95_ms": percentile(client_s, 0.95) * 1000,
                "curl_wall_p50_ms": statistics.median(wall_s) * 1000,
                "curl_total_p50_ms": statistics.median(total_s) * 1000,
                "ratio_client_to_curl_total": statistics.median(client_s) / statistics.median(total_s),
                "ratio_client_to_curl_wall": statistics.median(client_s) / statistics.median(wall_s),
            }
    return results


def print_table(results: dict) -> None:
    header = (f"{'operation':<20}{'client p50':>12}{'client p95':>12}{'curl wall p50':>15}{'curl http p50':>15}"
              f"{'client/http':>13}{'client/wall':>13}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<20}{r['client_p50_ms']:>10.2f}ms{r['client_p95_ms']:>10.2f}ms{r['curl_wall_p50_ms']:>13.2f}ms"
              f"{r['curl_total_p50_ms']:>13.2f}ms{r['ratio_client_to_curl_total']:>12.2f}x"
              f"{r['ratio_client_to_curl_wall']:>12.2f}x")


async def join(nodes) -> None:
    """Give the throwaway fleet one replication link so cluster_status has a peer to report."""
    first, second = nodes
    async with HarperClient(first.operations_url, username=first.username, password=first.password) as client:
        await client.add_node(NodeRequest(hostname=second.name, url=second.replication_url, verify_tls=False,
                                          authorization=Authorization(username=second.username,
                                                                      password=second.password)))
        for _ in range(100):
            status = await client.cluster_status()
            if status.connection(second.name) and status.connection(second.name).connected:
                return
            await asyncio.sleep(0.2)
    raise SystemExit("the bench fleet did not connect")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="operations API of an existing node (default: start a fleet)")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file", help="file holding the password (or env HARPER_PASSWORD)")
    parser.add_argument("--harperdb", help="harperdb executable for a self-started fleet (default: e2e cache)")
    parser.add_argument("-n", type=int, default=200, help="timed calls per operation and tool")
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is required")

    with ExitStack() as stack:
        if args.url:
            url, user = args.url, args.user
            password = (Path(args.password_file).read_text().strip() if args.password_file
                        else os.environ.get("HARPER_PASSWORD", ""))
            source = "given node"
        else:
            from e2e.testbed.harper import HarperFleet  # claims free loopback addresses with lock files
            from e2e.testbed.tools import ensure_harperdb
            harperdb = Path(args.harperdb) if args.harperdb else ensure_harperdb()
            fleet = stack.enter_context(HarperFleet(harperdb, 2))
            asyncio.run(join(fleet.nodes))
            node = fleet.nodes[0]
            url, user, password = node.operations_url, node.username, node.password
            source = "self-started 2-node fleet (e2e.testbed), joined once"
        results = asyncio.run(run(url, user, password, args.n, args.warmup))

    print(f"\nHarper operations API at {url} ({source}), n={args.n} per operation and tool\n")
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "node": url, "source": source, "n": args.n, "warmup": args.warmup,
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        "results": results,
    }, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
