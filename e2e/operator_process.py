"""The operator as the user runs it: `harper-operator run`, a separate process, out of cluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free port p whose p+1 is free too: the operator serves metrics on p and its liveness probe on p+1, on
    every address (seen: a run died at start with "address already in use" for p+1)."""
    while True:
        with socket.socket() as s, socket.socket() as following:
            s.bind(("0.0.0.0", 0))
            port = s.getsockname()[1]
            try:
                following.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
            return port


class OperatorProcess:
    def __init__(self, kubeconfig: str, log_path: Path, *, namespaces: tuple[str, ...] = (),
                 extra: tuple[str, ...] = ()):
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.metrics_port = free_port()
        self.namespaces, self.extra = namespaces, extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        exe = Path(sys.executable).with_name("harper-operator")
        args = [str(exe), "run", "--kubeconfig", self.kubeconfig, "--metrics-port", str(self.metrics_port),
                "--verify-timeout", "20", *self.extra]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"operator metrics never answered:\n{self.log_tail()}")

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def log_tail(self, lines: int = 120) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node failure would: no shutdown work, no finalizer released on the way
        out. start() runs it again with the same log and metrics port."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
