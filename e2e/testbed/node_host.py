"""The machine-wide state a Kubernetes node changes, and putting it back.

A kubelet, kube-proxy, containerd and the CNI plugins change the host far beyond their own
processes: iptables chains, sysctls, cgroups, mounts, network interfaces, and a few paths they
hard-code. Stopping the processes undoes none of it, so the node layer (node.py):

- takes a machine-wide lock first (MachineLock): these names and addresses are fixed, so two layers on
  one machine would tear each other down;
- records the host's values before changing anything (save_host_state), in STATE_DIR, so that even
  the clean-up after a crashed run knows what to restore;
- runs clean_host() after every stop AND before every start (a killed run leaves its state behind);
- and leftovers() lists whatever is still there, which the tests require to be nothing.

Everything here is idempotent and touches only what the node layer creates: its cgroup tree, mounts
under its directory, its own two interfaces, the fixed paths that did not exist before it, and
processes of its programs whose command line names its directory. The exception is iptables: the
kubelet, kube-proxy and the CNI plugins name their chains KUBE-* and CNI-* with nothing to tell
whose they are, so all of those go; start() refuses to run where another node's seem to exist.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

# One node layer per machine, so its directory is fixed: the clean-up of a crashed run must find it.
# Not under /tmp: proc.py sweeps its own temp dirs with rmtree, which must never walk into a
# leftover mount. Holds the containerd and kubelet roots, configs, certificates, logs.
STATE_DIR = Path(os.environ.get("HARPER_TESTBED_NODE_DIR", "/var/lib/harper-testbed-node"))
HOST_STATE = "host-state.json"
LOCK_PATH = Path("/run/lock/harper-testbed-node.lock")

NODE_IFACE = "harper-node0"  # carries the node IP (a dummy interface, or a port-less bridge)
BRIDGE = "harper-cni0"  # the CNI bridge plugin's bridge, the pods' gateway

# Paths the kubelet, containerd and the CNI plugins use whatever they are configured with.
FIXED_PATHS = (
    "/var/lib/kubelet/device-plugins",  # the kubelet's device-plugin socket dir, not under --root-dir
    "/var/log/containers",  # the kubelet's symlinks to container logs, for log shippers
    "/var/log/pods",
    "/var/lib/cni",  # libcni's result cache (containerd does not let it be moved)
    "/run/containerd/runc/k8s.io",  # runc state, if a shim ever runs without our Root option
)
# Parents created on the way to FIXED_PATHS, removed when nothing else is in them.
FIXED_PARENTS = ("/var/lib/kubelet", "/run/containerd/runc", "/run/containerd/s", "/run/containerd")
SHIM_SOCKETS = Path("/run/containerd/s")  # where containerd-shim-runc-v2 puts its socket, fixed

# Sysctls the layer changes: the bridge plugin turns on forwarding, the kubelet sets its kernel
# tunables (protectKernelDefaults is off), kube-proxy may touch route_localnet and conntrack.
# ip_forward comes first: writing it also resets every interface's forwarding and the "all"
# accept_redirects, which are restored after it.
SYSCTLS = (
    "net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding",
    "net/ipv4/conf/all/accept_redirects", "net/ipv4/conf/default/accept_redirects",
    "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
    "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
TABLES = ("filter", "nat", "mangle", "raw")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The kubelet's cgroupRoot: its kubepods tree goes under this cgroup, not at the top, so that the
# clean-up removes only the test bed's pods, never those of another kubelet on the machine.
KUBELET_CGROUP = "harper-testbed"
KUBEPODS = "kubepods"
# What the layer runs; a leftover process must be one of these AND name STATE_DIR.
PROGRAMS = ("containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "kube-controller-manager",
            "kube-scheduler", "runc", "coredns", "ctr")

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


class NodeBusy(RuntimeError):
    """Another node layer holds the machine."""


# --- the lock -------------------------------------------------------------------------------


class MachineLock:
    """flock on LOCK_PATH, held for the node layer's life; the file is removed on release.

    A waiter may lock a file that the holder has just unlinked, so after locking it checks that
    the path still names the file it locked, and starts over when not.
    """

    def __init__(self, path: Path = LOCK_PATH):
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() > deadline:
                    raise NodeBusy(f"another node layer holds {self.path} (pid {self._holder()}); "
                                   "only one runs per machine") from None
                time.sleep(0.5)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None


# --- sysctls --------------------------------------------------------------------------------


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:  # not on this kernel (or its module not loaded): nothing to restore
            pass
    return values


def _write_sysctl(name: str, value: str) -> None:
    try:
        Path("/proc/sys", name).write_text(value + "\n")
    except OSError:
        pass


def save_host_state() -> None:
    """Record what the layer will change; the first record wins until clean_host() consumed it."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / HOST_STATE
    if path.exists():
        return
    state = {"sysctls": read_sysctls(), "existing_paths": [p for p in (*FIXED_PATHS, *FIXED_PARENTS)
                                                           if os.path.lexists(p)]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.rename(tmp, path)


def _load_host_state() -> dict | None:
    try:
        return json.loads((STATE_DIR / HOST_STATE).read_text())
    except (OSError, ValueError):
        return None


# --- processes ------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]


def cgroup_hierarchies() -> list[Path]:
    """The mounted hierarchies: one per v1 controller (and name=systemd), or the v2 root."""
    if (CGROUP_ROOT / "cgroup.procs").exists():
        return [CGROUP_ROOT]
    if not CGROUP_ROOT.is_dir():
        return []
    return sorted(h for h in CGROUP_ROOT.iterdir() if (h / "cgroup.procs").exists())


def make_kubelet_cgroup() -> str:
    """Create the kubelet's cgroupRoot in every hierarchy (the kubelet refuses a missing one)."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / KUBELET_CGROUP
        path.mkdir(exist_ok=True)
        # A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and no task can join it.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((hierarchy / name).read_text())
    return "/" + KUBELET_CGROUP


def layer_cgroups() -> list[Path]:
    """The layer's cgroups (its root and every pod and container under it), deepest first."""
    found = []
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / KUBELET_CGROUP
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def foreign_kubepods() -> list[Path]:
    """kubepods cgroups at the top of a hierarchy: another kubelet's (this layer never makes them)."""
    return [h / KUBEPODS for h in cgroup_hierarchies() if (h / KUBEPODS).is_dir()]


def layer_pids() -> dict[int, str]:
    """pid -> why it belongs to the node layer: it runs in a pod cgroup, or its command line names
    the layer's directory (the kubelet, containerd, and the shims containerd daemonizes)."""
    found: dict[int, str] = {}
    for cg in layer_cgroups():
        try:
            for line in (cg / "cgroup.procs").read_text().split():
                found[int(line)] = f"in cgroup {cg}"
        except (OSError, ValueError):
            pass
    marker = str(STATE_DIR)
    for pid in _pids():
        if pid in found:
            continue
        try:
            program = os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
        except OSError:
            continue
        cmdline = _cmdline(pid)
        if program in PROGRAMS and any(marker in arg for arg in cmdline):
            found[pid] = " ".join(cmdline)[:200]
    found.pop(os.getpid(), None)
    return found


def kill_layer_processes(timeout: float = 10) -> None:
    """SIGKILL the pods' processes and the shims (and any other leftover naming STATE_DIR)."""
    deadline = time.monotonic() + timeout
    while (pids := layer_pids()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


# --- mounts ---------------------------------------------------------------------------------


def _mount_points() -> list[str]:
    points = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return points
    for line in lines:
        # The 5th field is the mount point, with spaces and the like octal-escaped.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        points.append(point)
    return points


def layer_mounts() -> list[str]:
    """Mounts under STATE_DIR: the kubelet's root (volumes), containerd's (rootfs, shm) and the pods'
    network namespaces (netns_mounts_under_state_dir) are all there."""
    root = str(STATE_DIR)
    return [p for p in _mount_points() if p == root or p.startswith(root + "/")]


def _unmount_all() -> None:
    for _ in range(5):  # stacked mounts need one pass per layer
        points = layer_mounts()
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            if _libc.umount2(point.encode(), 0) != 0 and ctypes.get_errno() != errno.EINVAL:
                _libc.umount2(point.encode(), _MNT_DETACH)


# --- iptables -------------------------------------------------------------------------------


def _iptables_binaries() -> list[str]:
    return [b for b in ("iptables", "ip6tables") if shutil.which(b)]


def _save(binary: str, table: str) -> str:
    done = subprocess.run([f"{binary}-save", "-t", table], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def layer_chains() -> list[str]:
    """'iptables/nat/KUBE-SERVICES' for every KUBE-*/CNI-* chain still defined."""
    found = []
    for binary in _iptables_binaries():
        for table in TABLES:
            for line in _save(binary, table).splitlines():
                if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                    found.append(f"{binary}/{table}/{line[1:].split()[0]}")
    return found


def _jumps_to_layer(rule: str) -> bool:
    return bool(re.search(r"\s-[jg]\s+(KUBE-|CNI-)", rule))


def _clean_iptables() -> None:
    for binary in _iptables_binaries():
        for table in TABLES:
            text = _save(binary, table)
            if "KUBE-" not in text and "CNI-" not in text:
                continue
            chains = [line[1:].split()[0] for line in text.splitlines()
                      if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)]
            # Rules in chains that stay (INPUT, POSTROUTING, ...) that jump into the layer's.
            for line in text.splitlines():
                if line.startswith("-A ") and _jumps_to_layer(line) and not line.split()[1].startswith(CHAIN_PREFIXES):
                    args = _split_rule(line[3:])
                    subprocess.run([binary, "-w", "-t", table, "-D", *args], capture_output=True)
            for flag in ("-F", "-X"):  # empty them all first: they jump to one another
                for chain in chains:
                    subprocess.run([binary, "-w", "-t", table, flag, chain], capture_output=True)


def _split_rule(rule: str) -> list[str]:
    """iptables-save quotes arguments with spaces (comments) the way a shell does."""
    import shlex
    return shlex.split(rule)


# --- interfaces -----------------------------------------------------------------------------


def _link_names() -> list[str]:
    return sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []


def layer_links() -> list[str]:
    names = _link_names()
    found = [n for n in (NODE_IFACE, BRIDGE) if n in names]
    # A pod's host-side veth while its network namespace still lives.
    found += [n for n in names if os.path.realpath(f"/sys/class/net/{n}/master").endswith(f"/{BRIDGE}")
              and os.path.exists(f"/sys/class/net/{n}/master")]
    return found


def _delete_links() -> None:
    for name in reversed(layer_links()):  # the veths before their bridge
        subprocess.run(["ip", "link", "delete", name], capture_output=True)


# --- paths ----------------------------------------------------------------------------------


def layer_paths() -> list[str]:
    state = _load_host_state() or {}
    existed = set(state.get("existing_paths", []))
    found = [p for p in FIXED_PATHS if os.path.lexists(p) and p not in existed]
    found += [p for p in FIXED_PARENTS if os.path.isdir(p) and p not in existed and not os.listdir(p)]
    if STATE_DIR.exists():
        found.append(str(STATE_DIR))
    return found


def _remove_dead_shim_sockets() -> None:
    """Shim sockets with no listener: a killed shim's. A live one may belong to another containerd."""
    if not SHIM_SOCKETS.is_dir():
        return
    try:
        listening = {line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
                     if len(line.split()) >= 8}
    except OSError:
        return
    for entry in SHIM_SOCKETS.iterdir():
        if str(entry) not in listening:
            entry.unlink(missing_ok=True)


def _remove_paths(state: dict | None) -> None:
    existed = set((state or {}).get("existing_paths", []))
    for path in FIXED_PATHS:
        if path not in existed and os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)
    _remove_dead_shim_sockets()
    for path in FIXED_PARENTS:  # deepest listed first
        if path not in existed:
            try:
                os.rmdir(path)  # only when empty
            except OSError:
                pass


# --- all of it ------------------------------------------------------------------------------


def another_node_here() -> list[str]:
    """Signs of a Kubernetes node that is not a test bed's: the clean-up would wreck it.

    KUBE-*/CNI-* chains are ours only when a record of ours exists (save_host_state runs before
    anything creates them, and clean_host removes the record last)."""
    signs = [f"cgroup {p}" for p in foreign_kubepods()]
    if not (STATE_DIR / HOST_STATE).exists():
        signs += [f"chain {c}" for c in layer_chains()]
    return signs



def clean_host() -> None:
    """Undo everything a node layer (this one, or a crashed one) left on the machine.

    Call it with the lock held and the layer's own processes already stopped: whatever still runs
    in a pod cgroup or names STATE_DIR is a leftover and gets SIGKILL.
    """
    state = _load_host_state()
    kill_layer_processes()
    _unmount_all()  # the pods' network namespaces, secret tmpfs, overlay rootfs
    for cg in layer_cgroups():  # children first; empty now that their processes are gone
        try:
            cg.rmdir()
        except OSError:
            pass
    _clean_iptables()
    _delete_links()
    if state:
        for name, value in state.get("sysctls", {}).items():
            if Path("/proc/sys", name).exists() and Path("/proc/sys", name).read_text().strip() != value:
                _write_sysctl(name, value)
    _remove_paths(state)
    if STATE_DIR.exists() and not layer_mounts():  # never rmtree across a mount
        shutil.rmtree(STATE_DIR, ignore_errors=True)


def leftovers() -> list[str]:
    """What a node layer left on the machine, one description per item; [] when clean."""
    items = [f"process {pid}: {why}" for pid, why in layer_pids().items()]
    items += [f"mount {p}" for p in layer_mounts()]
    items += [f"cgroup {cg}" for cg in layer_cgroups()]
    items += [f"chain {c}" for c in layer_chains()]
    items += [f"interface {n}" for n in layer_links()]
    items += [f"path {p}" for p in layer_paths()]
    if LOCK_PATH.exists():
        items.append(f"lock file {LOCK_PATH}")
    return items
