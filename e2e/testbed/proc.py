"""Child processes and temp dirs that never outlive the test run.

Three layers, because each covers a different way pytest can die:
- normal teardown calls stop(): SIGTERM to the child's process group, SIGKILL after a timeout;
- atexit (and SIGTERM, turned into KeyboardInterrupt) stops whatever is still registered;
- SIGKILL of pytest itself: the kernel delivers PR_SET_PDEATHSIG to every child.
Temp dirs left behind by a SIGKILLed run are swept by the next run (their owner pid is dead).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import ctypes
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_PREFIX = "harper-testbed-"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. Fixtures
# start nodes from worker threads that end right after, which would kill the nodes at once. So
# every fork happens on this one daemon thread, which lives exactly as long as the process.
_spawn_queue: queue.Queue = queue.Queue()


def _spawner() -> None:
    while True:
        future, args, kwargs = _spawn_queue.get()
        try:
            future.set_result(subprocess.Popen(*args, **kwargs))
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)


threading.Thread(target=_spawner, name="testbed-spawner", daemon=True).start()

_live: set[subprocess.Popen] = set()
_dirs: set[Path] = set()
_lock = threading.Lock()


def spawn(cmd: list[str], *, log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start cmd in its own session (so stop() can signal the whole group), output to log_path."""
    with open(log_path, "ab") as log:
        future: concurrent.futures.Future = concurrent.futures.Future()
        _spawn_queue.put((future, ([str(c) for c in cmd],), dict(
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, preexec_fn=_die_with_parent)))
        proc = future.result()
    with _lock:
        _live.add(proc)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it after timeout; also reaps the leader."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    # The leader is gone; kill stragglers in its group (e.g. a grandchild that ignored SIGTERM).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    with _lock:
        _live.discard(proc)


def make_temp_dir(kind: str) -> Path:
    _sweep_stale()
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-{kind}-"))
    with _lock:
        _dirs.add(path)
    return path


def remove_temp_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with _lock:
        _dirs.discard(path)


def _sweep_stale() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            pid = int(path.name[len(_PREFIX):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def wait_for(what: str, check, timeout: float, interval: float = 0.2, proc: subprocess.Popen | None = None,
             log_path: Path | None = None):
    """Poll check() until truthy; fail early if proc exits, and show the log's tail on failure."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout}s\n{log_tail(log_path)}")
        time.sleep(interval)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Harper paints a colour logo on stdout


def log_tail(path: Path | None, lines: int = 80) -> str:
    if path is None:
        return ""
    try:
        text = _ANSI.sub("", Path(path).read_text(errors="replace"))
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _cleanup() -> None:
    with _lock:
        procs, dirs = list(_live), list(_dirs)
    for proc in procs:
        stop(proc, timeout=5)
    for path in dirs:
        remove_temp_dir(path)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds with-blocks and fixtures like Ctrl-C


def interruptible() -> None:
    """Ctrl-C raises KeyboardInterrupt, even when this process was started with SIGINT ignored (a shell's background
    job, `nohup`): Python then leaves it ignored, and a sandbox brought to the foreground could not be stopped."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


atexit.register(_cleanup)
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)
