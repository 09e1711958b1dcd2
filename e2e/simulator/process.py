"""The SIMULATOR as a child process, for a benchmark: its 1,000 nodes then share neither the event loop nor the
GIL with the operator being measured, so the numbers are the operator's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class SimulatorProcess:
    """`with SimulatorProcess(250, 4, password=...) as sim:` -> sim.info (the JSON line), sim.stats()."""

    def __init__(self, clusters: int, nodes: int, *, password: str, username: str = "admin",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.args = ["--clusters", str(clusters), "--nodes", str(nodes), "--username", username, *extra_args]
        self._password = password
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 120.0) -> dict[str, Any]:
        """Start it and wait for its JSON line (every node listening); raises if it exits or takes too long."""
        self._dir = tempfile.TemporaryDirectory(prefix="harper-simulator-")
        secret = Path(self._dir.name) / "password"
        with os.fdopen(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(self._password)
        self.proc = subprocess.Popen([sys.executable, "-m", "e2e.simulator", "--password-file", str(secret),
                                      *self.args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not first or not first[0].strip():
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(f"the simulator did not start within {timeout:g}s (exit code {code}; see its stderr)")
        self.info = json.loads(first[0])
        return self.info

    def stats(self) -> dict[str, Any]:
        """GET /stats of the control endpoint (no proxy: it is a loopback address)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.info["stats"], timeout=10) as answer:
            return json.load(answer)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "SimulatorProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
