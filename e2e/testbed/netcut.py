"""Make a TCP port on a loopback address unreachable for a while: network faults for tests.

    from e2e.testbed import netcut
    with netcut.Cut("127.0.0.12", 9933):     # or netcut.cut(ip, port) ... netcut.heal(ip, port)
        ...   # no packet reaches or leaves 127.0.0.12:9933: connects time out, open connections stall
    netcut.heal_all()                        # every cut of this process, and the chain itself

A cut is two iptables DROP rules (to ip:port, from ip:port) in a chain of the test bed's own, CHAIN,
which INPUT and OUTPUT jump to (a loopback packet crosses both). Dropping, not rejecting: a peer
that vanished from the network sends nothing back, so clients see timeouts and stalls, and TCP
retransmits what was sent during the cut once it heals. Only 127.0.0.0/8 is accepted: the test bed
never touches an address it does not own.

Nothing may outlive the test run, as with proc.py's processes:
- heal_all() runs at exit (and proc.py turns SIGTERM into an exit that runs it);
- every rule carries its owner (pid and start time) in a comment, and every cut() and heal_all()
  first removes the rules of owners that are gone: what a SIGKILLed run left behind. The chain and
  its jumps go once no rule is left. Other live processes' cuts stay, so test runs can share a machine.
Needs root and iptables (installed with apt-get when missing).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

from . import proc  # noqa: F401  (its SIGTERM handler turns a kill into an exit that runs atexit)
from .tools import cache_dir

CHAIN = "HARPER-TESTBED-CUT"
HOOKS = ("INPUT", "OUTPUT")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_OWNER_TAG = "harper-testbed-cut owner="
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"

_iptables_path: str | None = None
_exit_hook_registered = False


class Cut:
    """cut(ip, port) for the length of a `with` block, healed on the way out whatever happens."""

    def __init__(self, ip: str, port: int):
        self.ip, self.port = _check(ip, port)

    def __enter__(self) -> "Cut":
        cut(self.ip, self.port)
        return self

    def __exit__(self, *exc) -> None:
        heal(self.ip, self.port)


def cut(ip: str, port: int) -> None:
    """Drop every TCP packet to ip:port and from ip:port until heal(). Cutting twice is cutting once."""
    ip, port = _check(ip, port)
    global _exit_hook_registered
    with _machine_lock():
        _sweep()
        _ensure_chain()
        if not _exit_hook_registered:
            atexit.register(heal_all)
            _exit_hook_registered = True
        for rule in _rules(ip, port):
            if not _exists(rule):
                _iptables("-A", CHAIN, *rule)


def heal(ip: str, port: int) -> None:
    """Undo this process's cut(ip, port); fine if there was none."""
    ip, port = _check(ip, port)
    if _binary() is None:  # no iptables: nothing can have been cut
        return
    with _machine_lock():
        for rule in _rules(ip, port):
            while _exists(rule):
                _iptables("-D", CHAIN, *rule)


def heal_all() -> None:
    """Remove this process's cuts and those of dead processes; then, unless another live process
    still has cuts, the chain and the jumps to it."""
    if _binary() is None:
        return
    with _machine_lock():
        _sweep(also_mine=True)


def cuts() -> list[tuple[str, int]]:
    """(ip, port) of every cut this process has in place."""
    mine = _owner(os.getpid())
    found = set()
    for args in _chain_rules():
        if _rule_owner(args) == mine and "--dport" in args:
            found.add((args[args.index("-d") + 1].removesuffix("/32"), int(args[args.index("--dport") + 1])))
    return sorted(found)


# --- iptables -----------------------------------------------------------------------------------


def _check(ip: str, port: int) -> tuple[str, int]:
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ValueError(f"netcut needs an IPv4 address in {LOOPBACK}, not {ip!r}") from None
    if address not in LOOPBACK:
        raise ValueError(f"netcut touches only the test bed's loopback addresses ({LOOPBACK}), not {ip}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port!r}")
    return str(address), port


def _binary() -> str | None:
    global _iptables_path
    if _iptables_path is None:
        _iptables_path = shutil.which("iptables", path=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}")
    return _iptables_path


def _ensure_iptables() -> str:
    global _iptables_path
    if os.geteuid() != 0:
        raise PermissionError("netcut changes iptables rules: it needs root")
    if _binary() is None:
        from .node_tools import ensure_debian_packages  # the node layer installs its packages this way
        try:
            ensure_debian_packages({"iptables": "/usr/sbin/iptables"})
        except Exception as err:
            raise RuntimeError(f"netcut needs iptables, which is missing and could not be installed: {err}") from err
        _iptables_path = None
        if _binary() is None:
            raise RuntimeError("netcut needs iptables: apt-get install iptables did not provide it")
    done = subprocess.run([_binary(), "-w", "-S", "INPUT"], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"netcut: iptables does not work on this machine (the kernel's netfilter?): "
                           f"{done.stderr.strip()}")
    return _binary()


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([_binary(), "-w", *args], capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"iptables {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _exists(rule: list[str], chain: str = CHAIN) -> bool:
    return _iptables("-C", chain, *rule, check=False).returncode == 0


def _rules(ip: str, port: int) -> list[list[str]]:
    mark = ["-m", "comment", "--comment", _OWNER_TAG + _owner(os.getpid()), "-j", "DROP"]
    return [["-d", f"{ip}/32", "-p", "tcp", "--dport", str(port), *mark],
            ["-s", f"{ip}/32", "-p", "tcp", "--sport", str(port), *mark]]


def _chain_rules() -> list[list[str]]:
    """The chain's rules as iptables -S prints them, split, without the leading "-A CHAIN"."""
    if _binary() is None:
        return []
    done = _iptables("-S", CHAIN, check=False)  # fails when the chain does not exist
    return [shlex.split(line)[2:] for line in done.stdout.splitlines() if line.startswith(f"-A {CHAIN} ")]


def _ensure_chain() -> None:
    _ensure_iptables()
    if _iptables("-S", CHAIN, check=False).returncode:
        _iptables("-N", CHAIN)
    jump = ["-j", CHAIN]
    for hook in HOOKS:
        if not _exists(jump, hook):
            # First in line, so that no ACCEPT rule someone else put there lets the packets through.
            _iptables("-I", hook, "1", *jump)


def _sweep(also_mine: bool = False) -> None:
    """Remove the rules of owners that are gone (and ours with also_mine), then the chain and its
    jumps if nothing is left in it."""
    if _binary() is None:
        return
    mine = _owner(os.getpid())
    left = 0
    for args in _chain_rules():
        owner = _rule_owner(args)
        if (owner == mine and also_mine) or (owner != mine and not _alive(owner)):
            _iptables("-D", CHAIN, *args, check=False)
        else:
            left += 1
    if left:
        return
    for hook in HOOKS:
        while _iptables("-D", hook, "-j", CHAIN, check=False).returncode == 0:
            pass
    _iptables("-F", CHAIN, check=False)
    _iptables("-X", CHAIN, check=False)


# --- owners -------------------------------------------------------------------------------------


def _owner(pid: int) -> str:
    """pid.start-time: a pid alone could be reused by an unrelated process after ours died."""
    return f"{pid}.{_start_time(pid)}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2:].split()[19]  # field 22, counted after the command's ")"


def _rule_owner(args: list[str]) -> str | None:
    for arg in args:
        if arg.startswith(_OWNER_TAG):
            return arg[len(_OWNER_TAG):]
    return None  # not of a form we write: nobody's, so swept


def _alive(owner: str | None) -> bool:
    if owner is None:
        return False
    pid, _, started = owner.partition(".")
    return pid.isdigit() and _start_time(int(pid)) == started


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One process at a time reads and changes the chain (several test runs may share a machine)."""
    path = cache_dir() / "netcut.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # also between threads: each open() is a lock of its own
        yield
