"""Memory over password rotations: ClientPool now, and the pool as it was (replaced clients never closed; issue 21).

    python bench/rotations.py                      # 1,000 rotations of 2 members
    python bench/rotations.py --rotations 200 --members 3 --tls

Each rotation gives every member a new password and reads cluster_status from each with it, against FAKE Harper
nodes served from another process (tests/harper/harper_fakes.py), so only the operator side is measured. Each
variant runs in a fresh subprocess and reports clients held, sessions open, RSS growth (ru_maxrss and the current
RSS from /proc) and tracemalloc's growth from the end of a 50-rotation warm-up. With --tls the members are https
with a CA bundle, as in a cluster (an SSL context per client). Written to bench/results/rotations.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "rotations.json"
MIB = 1024 * 1024
WARMUP = 50


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- subprocess roles

def serve(members: int, tls_dir: str | None) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "harper"))
    from harper_fakes import CertAuthority, Reply, recording, start_fake

    async def main() -> None:
        context = None
        if tls_dir:
            d = Path(tls_dir)
            context = CertAuthority("", d / "server.pem", d / "server.key", "").server_context()
        fakes = []
        for _ in range(members):
            fake, _runner = await start_fake(context)
            fake.on("cluster_status", Reply(200, recording("cluster_status_no_peers")["body"]))
            fakes.append(fake)
        print(json.dumps([f.url for f in fakes]), flush=True)
        while True:  # forget what was seen, so the fakes do not grow for ever
            await asyncio.sleep(1)
            for fake in fakes:
                fake.seen.clear()

    asyncio.run(main())


def measure(urls: list[str], rotations: int, variant: str, ca_pem: str | None) -> dict:
    import tracemalloc

    from harper_operator.controller.clients import ClientPool
    from harper_operator.controller.members import Access

    class OldPool(ClientPool):
        """The pool before issue 21: a client of new credentials is added, the node's previous one kept open."""

        def _replace(self, operations_url: str) -> None:
            self._current.pop(operations_url, None)

    async def rotate(pool: ClientPool, rounds: range) -> None:
        for n in rounds:
            clients = [pool.client(Access(url, "admin", f"rotated-{n}", True, ca_pem)) for url in urls]
            await asyncio.gather(*(c.cluster_status() for c in clients))
        await asyncio.sleep(0)

    async def run() -> dict:
        pool = (OldPool if variant == "before" else ClientPool)()
        await rotate(pool, range(WARMUP))
        gc.collect()
        tracemalloc.start()
        traced0, rss0, peak0, started = tracemalloc.get_traced_memory()[0], rss_now(), rss_peak(), time.perf_counter()
        await rotate(pool, range(WARMUP, WARMUP + rotations))
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced0
        tracemalloc.stop()
        held = list(pool._clients.values())
        result = {"clients_held": len(held), "sessions_open": sum(c.open for c in held),
                  "rss_growth_mib": round((rss_now() - rss0) / MIB, 1),
                  "peak_rss_growth_mib": round((rss_peak() - peak0) / MIB, 1),
                  "tracemalloc_growth_mib": round(traced / MIB, 2),
                  "seconds": round(time.perf_counter() - started, 1)}
        await pool.close()
        return result

    return asyncio.run(run())


# --------------------------------------------------------------------------- orchestration

def make_tls(d: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests" / "harper"))
    from harper_fakes import make_cert_authority

    return make_cert_authority(d).ca_pem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rotations", type=int, default=1000)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--tls", action="store_true", help="https members with a CA bundle")
    parser.add_argument("--role", choices=("serve", "before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "serve":
        return serve(args.members, args.tls_dir)
    if args.role in ("before", "after"):
        ca_pem = (Path(args.tls_dir) / "ca.pem").read_text() if args.tls_dir else None
        return print(json.dumps(measure(json.loads(args.urls), args.rotations, args.role, ca_pem)))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tls = ["--tls-dir", tmp] if args.tls else []
        if args.tls:
            make_tls(Path(tmp))
        server = subprocess.Popen([sys.executable, __file__, "--role", "serve", "--members", str(args.members), *tls],
                                  stdout=subprocess.PIPE, text=True, env=env)
        try:
            urls = server.stdout.readline().strip()
            for variant in ("before", "after"):
                done = subprocess.run([sys.executable, __file__, "--role", variant, "--urls", urls,
                                       "--rotations", str(args.rotations), *tls],
                                      capture_output=True, text=True, env=env, timeout=1800)
                rows[variant] = (json.loads(done.stdout) if done.returncode == 0
                                 else {"failed": done.stderr.strip().splitlines()[-1:]})
        finally:
            server.terminate()
            server.wait()

    print(f"{args.rotations} rotations of {args.members} members ({'https + CA bundle' if args.tls else 'http'}), "
          f"measured after a {WARMUP}-rotation warm-up:")
    for variant, row in rows.items():
        print(f"  {variant:<7} {row}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rotations": args.rotations,
        "members": args.members, "tls": args.tls, "python": platform.python_version(),
        "machine": platform.machine(), "results": rows}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
