"""Real Harper nodes as local processes, one loopback address each (recipe: docs/harper-semantics.md)."""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import json
import os
import re
import shutil
import secrets
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from . import proc
from .tools import cache_dir

OPS_PORT, HTTP_PORT, REPLICATION_PORT, MQTT_PORT, MQTTS_PORT = 9925, 9926, 9933, 1883, 8883
PORTS = (OPS_PORT, HTTP_PORT, REPLICATION_PORT, MQTT_PORT, MQTTS_PORT)
ADMIN_USERNAME = "admin"
FIRST_IP = 11  # node i listens on 127.0.0.(11 + i) unless another test bed holds it


class HarperNode:
    """One Harper process. All its ports sit on its own loopback address, because Harper listens
    with SO_REUSEPORT: two nodes on one address:port would silently share it instead of failing."""

    def __init__(self, index: int, ip: str, harperdb: Path, workdir: Path, username: str, password: str,
                 password_file: Path):
        self.index, self.ip, self.harperdb = index, ip, harperdb
        self.name = ip  # REPLICATION_HOSTNAME: the node name peers and cluster_status use
        self.operations_url = f"http://{ip}:{OPS_PORT}"
        self.replication_url = f"wss://{ip}:{REPLICATION_PORT}"
        self.username, self.password, self.password_file = username, password, password_file
        self.dir = workdir
        self.home = workdir / "home"  # Harper keeps $HOME/.harperdb/hdb_boot_properties.file
        self.root = workdir / "root"
        self.stdout_path = workdir / "stdout.log"
        self.log_path = self.root / "log" / "hdb.log"  # Harper's own log
        self.ports = [(ip, p) for p in PORTS]
        self._proc = None
        self._lock = threading.RLock()
        self.restarts = 0  # restarts Harper asked for itself ({"operation": "restart"})
        self.installs = 0  # reinstalls: each makes a new certificate authority under the node's old name
        self.relaunch_error: str | None = None  # why the last relaunch after a restart operation failed
        self.home.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"HarperNode({self.name})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        ip = self.ip
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
            "TC_AGREEMENT": "yes", "ROOTPATH": str(self.root),
            "HDB_ADMIN_USERNAME": self.username, "HDB_ADMIN_PASSWORD": self.password,
            "THREADS_COUNT": "1",
            # host:port pins every listener to this node's address (plain HTTP for the ops API).
            "OPERATIONSAPI_NETWORK_PORT": f"{ip}:{OPS_PORT}", "HTTP_PORT": f"{ip}:{HTTP_PORT}",
            "REPLICATION_HOSTNAME": ip, "REPLICATION_URL": self.replication_url,
            "REPLICATION_SECUREPORT": f"{ip}:{REPLICATION_PORT}",
            "MQTT_NETWORK_PORT": f"{ip}:{MQTT_PORT}", "MQTT_NETWORK_SECUREPORT": f"{ip}:{MQTTS_PORT}",
            # Without this, {"operation": "restart"} makes Harper spawn a detached copy of itself
            # (new session, parent init) and exit: it would escape stop() and the death signal.
            # With it, Harper just exits 0 and we relaunch it, as a kubelet would (see _watch).
            "HARPER_EXIT_ON_RESTART": "1",
        }

    def start(self) -> "HarperNode":
        """Start the process (installs on the first start). Returns at once; see wait_healthy()."""
        with self._lock:
            if not self.is_running():
                self._start()
        return self

    def _start(self) -> None:
        busy = [f"{h}:{p}" for h, p in self.ports if not proc.port_is_free(h, p)]
        if busy:  # with SO_REUSEPORT we would share them with a stranger instead of failing
            raise RuntimeError(f"{self.name}: ports already in use: {', '.join(busy)}")
        # No sub-command: install on first start, then run in the foreground.
        child = proc.spawn([self.harperdb], env=self.env(), log_path=self.stdout_path, cwd=self.dir)
        self._proc = child
        threading.Thread(target=self._watch, args=(child,), name=f"watch-{self.name}", daemon=True).start()

    def _watch(self, child) -> None:
        """Relaunch Harper when it exits 0 on its own: that is how it restarts (HARPER_EXIT_ON_RESTART).
        stop() and kill() forget the process first, and a crash (non-zero exit) stays down."""
        child.wait()
        with self._lock:
            if self._proc is child and child.returncode == 0:
                self.restarts += 1
                self._proc = None
                # The exited process's ports can take a moment to be free again; a relaunch that still cannot bind
                # them is said by wait_healthy, not lost in this thread.
                deadline = time.monotonic() + 10
                while True:
                    try:
                        self.start()
                        self.relaunch_error = None
                        break
                    except RuntimeError as e:
                        if time.monotonic() > deadline:
                            self.relaunch_error = str(e)
                            break
                        time.sleep(0.2)

    def wait_healthy(self, timeout: float = 120) -> "HarperNode":
        def check() -> bool:
            # Under the lock: _watch counts a restart, forgets the old process and starts the new one while holding
            # it, and a read in between saw no process at all (CI run 11: "not running (exit code None)" just after
            # a restart operation was counted). Exit code 0 is a restart in progress.
            with self._lock:
                child = self._proc
            if child is None or child.poll() not in (None, 0):
                raise RuntimeError(f"Harper {self.name} is not running (exit code {child and child.returncode}"
                                   f"{'; relaunch failed: ' + self.relaunch_error if self.relaunch_error else ''})"
                                   f"\n{self.log_tail(40)}")
            return self.healthy()

        proc.wait_for(f"Harper {self.name} /health", check, timeout=timeout, interval=0.25,
                      log_path=self.stdout_path)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.operations_url}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 20) -> None:
        with self._lock:
            child, self._proc = self._proc, None
        proc.stop(child, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown work at all. The node stays down."""
        with self._lock:
            child, self._proc = self._proc, None
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        proc.stop(child)

    def reinstall(self, timeout: float = 180) -> "HarperNode":
        """A brand-new Harper on the same address: some state (explicit subscriptions, local deletions of node
        records) survives remove_node and restarts, and only a fresh ROOTPATH clears it."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.home / ".harperdb", ignore_errors=True)
        self.installs += 1
        return self.start().wait_healthy(timeout)

    def restart(self, timeout: float = 120) -> "HarperNode":
        self.stop()
        return self.start().wait_healthy(timeout)

    def operation(self, body: dict, *, auth: tuple[str, str] | None = None,
                  timeout: float = 30, ask_again_after: float | None = 3.0,
                  refused_for: float = 0.0) -> tuple[int, Any]:
        """POST one operation with Basic auth (the admin's unless `auth` is given).
        Returns (HTTP status, parsed JSON or the raw text). Connection errors raise.

        A cluster_status still unanswered after `ask_again_after` seconds is sent again, until `timeout`: Harper
        4.7.29 leaves all but one of the cluster_status requests a worker thread holds at once unanswered
        (docs/harper-semantics.md section 10), and the operator under test reads the same nodes."""
        user, password = auth or (self.username, self.password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(self.operations_url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Basic {token}"})
        deadline = time.monotonic() + timeout
        again = ask_again_after if body.get("operation") == "cluster_status" else None
        while True:
            left = deadline - time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=min(left, again) if again else timeout) as resp:
                    status, raw = resp.status, resp.read()
                break
            except urllib.error.HTTPError as err:
                status, raw = err.code, err.read()
                break
            except TimeoutError:
                if not again or deadline - time.monotonic() <= 0.05:
                    raise
            except (urllib.error.URLError, ConnectionResetError) as err:
                # With `refused_for`, a node the operator is restarting (a reconnect, a forget-CA restart), which
                # refuses for a few seconds, is asked again for that long (seen in CI: the fault matrix's password
                # change failed on one). A request the old process accepted and then dropped as it went down
                # (RemoteDisconnected, also seen in CI) is the same restart a moment earlier. Without it, or once
                # that long has passed, either raises. Only idempotent operations pass `refused_for`.
                reason = err.reason if isinstance(err, urllib.error.URLError) else err
                if not isinstance(reason, (ConnectionRefusedError, ConnectionResetError)) or not refused_for:
                    raise
                refused_for = max(refused_for - 0.5, 0.0)
                time.sleep(0.5)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, body: dict, **kwargs) -> Any:
        """operation() that must answer 200."""
        status, answer = self.operation(body, **kwargs)
        if status != 200:
            raise AssertionError(f"{body.get('operation')} on {self.name}: {status} {answer}")
        return answer

    def peers(self) -> list[str]:
        """Names of the nodes this node's cluster_status lists (connected or not)."""
        return [c["name"] for c in self.ok({"operation": "cluster_status"}).get("connections", [])]

    def schema(self) -> dict[str, set[str]]:
        return {db: set(tables) for db, tables in self.ok({"operation": "describe_all"}).items()}

    def rss_bytes(self) -> int:
        """Resident memory of every process in the node's process group."""
        if not self.is_running():
            return 0
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self._proc.pid:  # field 5, pgrp
                    total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24, rss pages
            except (OSError, IndexError, ValueError):
                continue
        return total

    def log_tail(self, lines: int = 80) -> str:
        return (f"--- {self.log_path}\n{proc.log_tail(self.log_path, lines)}\n"
                f"--- {self.stdout_path}\n{proc.log_tail(self.stdout_path, 20)}")


def claim_addresses(count: int, ports: tuple[int, ...]) -> tuple[list[str], list]:
    """Loopback addresses from 127.0.0.11 up, each held by a lock file for as long as its lock is open.

    Several test beds share this machine (pytest sessions, `make demo`), and Harper's SO_REUSEPORT would let
    two of them bind one address silently. A free port is not enough either: a node a test has stopped leaves
    its ports free but must get them back. flock locks vanish with their process, so a SIGKILLed run frees
    its addresses by itself. Returns (addresses, open locks: close them to give the addresses back).
    """
    lock_dir = cache_dir() / "address-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    ips, locks = [], []
    for last in range(FIRST_IP, 255):
        ip = f"127.0.0.{last}"
        lock = open(lock_dir / ip, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        if not all(proc.port_is_free(ip, p) for p in ports):  # someone outside the test bed
            lock.close()
            continue
        locks.append(lock)
        ips.append(ip)
        if len(ips) == count:
            return ips, locks
    for lock in locks:
        lock.close()
    raise RuntimeError(f"fewer than {count} free loopback addresses")


class HarperFleet:
    """N Harper nodes sharing one admin username/password (random per fleet), started in parallel.

    reset() brings them back to the state just after start: every node running, no replication
    peers, no databases or tables but the ones a fresh node has.
    """

    def __init__(self, harperdb: Path, count: int):
        self.harperdb, self.count = harperdb, count
        self._locks: list = []
        self.username, self.password = ADMIN_USERNAME, secrets.token_urlsafe(16)
        self.dir: Path | None = None
        self.nodes: list[HarperNode] = []
        self._baseline: dict[str, dict[str, set[str]]] = {}
        self._configs: dict[str, bytes] = {}
        self._installs: dict[str, int] = {}  # node -> its reinstalls at the last reset
        self._log_read: dict[str, int] = {}  # node -> how much of its hdb.log the last reset read
        self.last_reset_seconds = 0.0

    def start(self, timeout: float = 180) -> "HarperFleet":
        self.dir = proc.make_temp_dir("harper")
        try:
            password_file = self.dir / "admin-password"
            password_file.write_text(self.password)
            password_file.chmod(0o600)
            self.nodes = [HarperNode(i, ip, self.harperdb, self.dir / f"node-{i}", self.username, self.password,
                                     password_file) for i, ip in enumerate(self._claim_addresses())]
            for node in self.nodes:
                node.start()
            self._each(lambda n: n.wait_healthy(timeout))
            for node in self.nodes:
                self._remember_fresh(node)
        except BaseException:
            self.stop()
            raise
        return self

    def _claim_addresses(self) -> list[str]:
        ips, self._locks = claim_addresses(self.count, PORTS)
        return ips

    def stop(self) -> None:
        self._each(lambda n: n.stop())
        for lock in self._locks:
            lock.close()
        self._locks.clear()
        if self.dir:
            proc.remove_temp_dir(self.dir)

    def __enter__(self) -> "HarperFleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _each(self, fn: Callable[[HarperNode], Any], nodes: list[HarperNode] | None = None) -> list:
        nodes = self.nodes if nodes is None else nodes
        if not nodes:
            return []
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            return list(pool.map(fn, nodes))

    def forget_wiped(self, wiped: HarperNode, timeout: float = 120, among: list[HarperNode] | None = None) -> None:
        """What a person does after wiping a node that is in no cluster now (docs/harper-semantics.md, section 9):
        on every other node, remove its record, the certificates its old CA issued and the copy of that CA (a node
        whose certificate it signed keeps them on disk), then restart them all in parallel (the old CA is also held
        in memory until a restart); otherwise a join with it, or with a node it signed, never connects.

        The certificates are told apart by name only, so call it before any node has met the wiped node's new CA,
        or pass `among`: the nodes that have not (a node that rejoined it already holds the new one)."""
        issuer = re.compile(rf"HarperDB-Certificate-Authority-{re.escape(wiped.name)}(?![\w.-])")
        targets = [n for n in (self.nodes if among is None else among) if n is not wiped]
        for node in targets:
            # A record of it left from an earlier mesh carries the old CA too, and a restart loads it back into
            # memory (seen: a node that was a ghost beside the wiped one kept failing CERT_SIGNATURE_FAILURE).
            if wiped.name in node.peers():
                node.operation({"operation": "remove_node", "hostname": wiped.name})
            for cert in node.ok({"operation": "list_certificates"}):
                details = cert.get("details") or {}
                if issuer.search(str(cert.get("name"))) or (not cert.get("is_authority")
                                                            and issuer.search(str(details.get("issuer")))):
                    node.ok({"operation": "remove_certificate", "name": cert["name"]})
        self._each(lambda n: n.restart(timeout), targets)

    def change_password(self, password: str) -> None:
        """The admin's new password on every node (Harper first, then what tests and reinstalls use)."""
        body = {"operation": "alter_user", "username": self.username, "password": password}
        for node in self.nodes:
            # The operator may be restarting this node right now (the matrix rotates the password mid-step).
            status, answer = node.operation(body, refused_for=30)
            if status == 401:  # a meshed peer's change already replicated here (system.hdb_user is replicated)
                status, answer = node.operation(body, auth=(self.username, password), refused_for=30)
            if status != 200:
                raise AssertionError(f"alter_user on {node.name}: {status} {answer}")
        self.password = password
        for node in self.nodes:
            node.password = password
        if self.dir:
            (self.dir / "admin-password").write_text(password)

    def reset(self, timeout: float = 120, drop_data: bool = True) -> float:
        """Back to "no replication peers, no test data" on every node; returns the seconds it took.

        drop_data=False keeps databases and tables: Harper 4.7.29 crashed once (SIGSEGV in LMDB, "Can not renew a
        transaction from a closed database") when a database it replicated was dropped and created again while
        connections of an earlier mesh were still open; the fault matrix keeps its table for that reason."""
        started = time.monotonic()
        self._each(lambda n: self._reset_process(n, timeout))
        self._clear_peers(timeout)
        self._forget_old_authorities(timeout)
        if drop_data:
            self._each(self._drop_test_data)  # after the peers are gone, so drops stay local
        self.last_reset_seconds = time.monotonic() - started
        return self.last_reset_seconds

    def reinstall(self, nodes: list[HarperNode] | None = None, timeout: float = 180) -> None:
        """Brand-new Harpers on the same addresses, in parallel (about 13 s): nodes that never met, whose first
        add_node calls sign certificates (docs/harper-semantics.md section 11). A node left out that had met one of
        them still knows its old certificate: the wiped-node case (section 9)."""
        self._each(lambda n: n.reinstall(timeout), nodes)
        for node in nodes or self.nodes:
            self._remember_fresh(node)

    def _remember_fresh(self, node: HarperNode) -> None:
        """What a fresh node looks like, to return to it in reset()."""
        self._baseline[node.name] = node.schema()
        self._configs[node.name] = (node.root / "harperdb-config.yaml").read_bytes()

    def _clear_peers(self, timeout: float) -> None:
        # remove_node spreads to the peers, and a node that was removed elsewhere still lists its
        # old peers until it removes them itself (or restarts), so every node removes everything it
        # lists. If some node still lists peers after two rounds, restart it (docs/harper-semantics.md, section 3).
        for attempt in range(3):
            listing = [n for n in self.nodes if n.peers()]
            if not listing:
                return
            if attempt < 2:
                for node in listing:
                    for peer in node.peers():
                        node.operation({"operation": "remove_node", "hostname": peer})  # 400 if gone already
            else:
                self._each(lambda n: n.restart(timeout), listing)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(n.peers() for n in listing):
                time.sleep(0.2)
        left = {n.name: n.peers() for n in self.nodes if n.peers()}
        if left:
            raise RuntimeError(f"reset: nodes still list replication peers: {left}")

    def _forget_old_authorities(self, timeout: float) -> None:
        """After a reinstall since the last reset, restart every node, once no records are left. A node that met
        the reinstalled one's old CA keeps trusting it in memory (the first CA of a name wins) and fails the new
        one's certificates, and every certificate the new CA signed, until it restarts (docs/harper-semantics.md
        section 9). Seen in CI: 127.0.0.11 never connected to .12, whose certificate a reinstalled .14 had signed."""
        if any(n.installs != self._installs.get(n.name, n.installs) for n in self.nodes):
            self._each(lambda n: n.restart(timeout))
        self._installs = {n.name: n.installs for n in self.nodes}

    def _reset_process(self, node: HarperNode, timeout: float) -> None:
        """Running, healthy and on the start-up configuration (tests may stop nodes or set routes), and restarted
        after an uncaught exception: Harper 4.7.29 keeps running and answering after one in its replication code
        ("uncaughtException Error: WebSocket was closed before the connection was established", seen in CI run 35
        while the client tests added and removed peers quickly), but that node then paired with nobody: three later
        tests that joined it to another node failed."""
        config = node.root / "harperdb-config.yaml"
        if config.read_bytes() != self._configs[node.name]:
            config.write_bytes(self._configs[node.name])
            node.stop()
        if not node.is_running() or not node.healthy() or self._threw(node):
            node.restart(timeout)
        self._log_read[node.name] = self._log_size(node)

    # The uncaught exception that left a node unable to pair. Not every one: "certificate signature failure" is
    # logged hundreds of times around a wiped node (section 9 of docs/harper-semantics.md) and the node recovers.
    _BROKEN_BY = b"uncaughtException Error: WebSocket was closed before the connection was established"

    def _threw(self, node: HarperNode) -> bool:
        """Did Harper log the uncaught exception that breaks its pairing since the last reset read its log?"""
        start = self._log_read.get(node.name, 0)
        if self._log_size(node) < start:  # a new log (a reinstall)
            start = 0
        try:
            with open(node.log_path, "rb") as log:
                log.seek(start)
                return self._BROKEN_BY in log.read()
        except OSError:
            return False

    @staticmethod
    def _log_size(node: HarperNode) -> int:
        try:
            return node.log_path.stat().st_size
        except OSError:
            return 0

    def _drop_test_data(self, node: HarperNode) -> None:
        baseline = self._baseline[node.name]
        for db, tables in node.schema().items():
            if db not in baseline:
                node.ok({"operation": "drop_database", "database": db})
                continue
            for table in tables - baseline[db]:
                node.ok({"operation": "drop_table", "database": db, "table": table})
