"""python -m e2e.simulator: run the scale-benchmark SIMULATOR of Harper nodes until SIGTERM or SIGINT.

Prints one JSON line on stdout once every node listens (the nodes per group, for a benchmark to write
HarperNodes from); logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from .server import CONTROL_PORT, OPERATIONS_PORT, REPLICATION_PORT, Simulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m e2e.simulator",
        description="SIMULATOR of many Harper nodes for the operator's scale benchmark: answers the clustering "
                    "operations from an in-memory model. Not Harper; never used by the e2e scenarios.")
    p.add_argument("--clusters", type=int, default=1, help="independent groups of nodes (default 1)")
    p.add_argument("--nodes", type=int, default=3, help="nodes per group (default 3)")
    p.add_argument("--password-file", type=Path, required=True, help="file holding the super_user's password")
    p.add_argument("--username", default="admin", help="the super_user's name (default admin)")
    p.add_argument("--operations-port", type=int, default=OPERATIONS_PORT)
    p.add_argument("--replication-port", type=int, default=REPLICATION_PORT)
    p.add_argument("--control-port", type=int, default=CONTROL_PORT)
    return p


async def _serve(sim: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        print(json.dumps(sim.describe()), flush=True)
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="simulator %(levelname)s %(message)s")
    password = args.password_file.read_text().rstrip("\r\n")
    try:
        sim = Simulator([args.nodes] * args.clusters, username=args.username, password=password,
                        operations_port=args.operations_port, replication_port=args.replication_port,
                        control_port=args.control_port)
    except ValueError as e:
        _parser().error(str(e))
    asyncio.run(_serve(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
