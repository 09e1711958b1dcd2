"""A Kubernetes control plane made of two local processes: etcd and kube-apiserver.

Set up the way controller-runtime's envtest does it (loopback, RBAC on, an admin credential,
service-account keys so TokenRequest works). Nothing runs pods: there is no kubelet, scheduler or
controller-manager, so namespaces never finish deleting and ownerReference garbage collection
never happens. Tests must not wait for either.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from . import proc
from .tools import Tools

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "testbed-admin"


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_certs(d: Path) -> None:
    """A CA, an apiserver serving cert signed by it, and the service-account signing key.

    The openssl CLI, as a person setting up a control plane by hand would. EC P-256 keys because they are
    instant to generate.
    """
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
             "-days", "3650", "-subj", "/CN=harper-testbed-ca")
    _openssl("req", "-x509", *ec, "-keyout", str(d / "apiserver.key"), "-out", str(d / "apiserver.crt"),
             "-days", "3650", "-subj", "/CN=kube-apiserver", "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:198.19.255.1,DNS:kubernetes.default.svc")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(d / "sa.key"))
    _openssl("pkey", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))


class ControlPlane:
    """etcd + kube-apiserver on loopback. Use as a context manager, or start()/stop().

    Attributes once started: kubeconfig (str path, admin), server (https URL), version
    (what /version reports), token (the admin bearer token), log_path (apiserver log),
    etcd_log_path, ca_path (the CA that signed the serving cert), ports (etcd client, etcd peer,
    apiserver).

    For fault tests each of the two can be stopped and started again alone (stop_apiserver,
    start_apiserver, stop_etcd, start_etcd, restart_apiserver, restart_etcd): same data dir, same
    ports, same arguments, so clients holding the same kubeconfig reconnect by themselves.
    Subclasses (node.NodeControlPlane) change the address, the certificates and the apiserver's
    own arguments through address, _make_certs and _apiserver_args, not through a copy of _start.
    """

    address = "127.0.0.1"  # where the apiserver listens and what it advertises

    def __init__(self, tools: Tools):
        self.tools = tools
        self._etcd = self._apiserver = None
        self.dir: Path | None = None
        self.kubeconfig = self.server = self.version = self.token = ""
        self.ports: list[int] = []
        self.log_path: Path | None = None
        self.etcd_log_path: Path | None = None
        self._etcd_port = self._peer_port = self._port = 0

    def start(self) -> "ControlPlane":
        self.dir = d = proc.make_temp_dir("kube")
        try:
            self._start(d)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, d: Path) -> None:
        self._make_certs(d)
        self.ca_path = d / "ca.crt"
        self.token = secrets.token_urlsafe(24)
        # A static token in group system:masters: the simplest admin; RBAC lets masters do anything.
        (d / "tokens.csv").write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        self.etcd_log_path, self.log_path = d / "etcd.log", d / "kube-apiserver.log"

        # Ports are picked once and kept: a restarted process must be where clients expect it.
        self._etcd_port, self._peer_port = proc.free_port(), proc.free_port()
        self.start_etcd()
        self._port = proc.free_port(self.address)  # after etcd took its two, so it cannot pick one of them
        self.ports = [self._etcd_port, self._peer_port, self._port]  # for leak checks after stop()
        self.server = f"https://{self.address}:{self._port}"
        self.start_apiserver()
        self.version = json.loads(self._get("/version"))["gitVersion"]
        self.kubeconfig = str(self.write_kubeconfig(d / "kubeconfig", self.token, ADMIN_USER))

    def _make_certs(self, d: Path) -> None:
        make_certs(d)

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self._etcd_port}"

    # --- etcd ---

    def _etcd_command(self) -> list:
        peer = f"http://127.0.0.1:{self._peer_port}"
        return [
            self.tools.etcd, "--name=testbed", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}",
            "--unsafe-no-fsync",  # test data: durability buys nothing, fsync costs seconds
            "--log-level=warn",
        ]

    def start_etcd(self) -> None:
        """Start etcd (again: the data dir is kept); returns once /health answers. No-op if running."""
        if _running(self._etcd):
            return
        self._etcd = proc.spawn(self._etcd_command(), log_path=self.etcd_log_path)
        proc.wait_for("etcd health", lambda: _get_ok(f"{self.etcd_url}/health"), timeout=30,
                      proc=self._etcd, log_path=self.etcd_log_path)

    def stop_etcd(self, kill: bool = False) -> None:
        """Stop etcd: SIGTERM, or SIGKILL with kill=True (a crash). The apiserver keeps running and
        fails its requests until start_etcd(). No-op if stopped."""
        _halt(self._etcd, kill)
        self._etcd = None

    def restart_etcd(self, down: float = 0, *, kill: bool = False) -> None:
        """stop_etcd(kill), `down` seconds away, start_etcd(). The apiserver's /readyz may still
        fail for a few seconds after it returns, until its etcd client has reconnected."""
        self.stop_etcd(kill)
        time.sleep(down)
        self.start_etcd()

    # --- kube-apiserver ---

    def _apiserver_command(self) -> list:
        d = self.dir
        return [
            self.tools.kube_apiserver,
            f"--etcd-servers={self.etcd_url}",
            f"--advertise-address={self.address}", f"--bind-address={self.address}", f"--secure-port={self._port}",
            f"--cert-dir={d}", f"--tls-cert-file={d / 'apiserver.crt'}",
            f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",  # lets tests add client-cert users signed by the CA
            f"--token-auth-file={d / 'tokens.csv'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--allow-privileged=true",
            *self._apiserver_args(),
        ]

    def _apiserver_args(self) -> list[str]:
        """What is particular to this kind of control plane."""
        return [
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=198.19.255.0/24",  # only a config value: nothing routes there
            # Its finalizer on PVCs/PVs is only ever removed by the controller-manager, which is
            # absent; with it on, a deleted PVC would hang forever. ServiceAccount admission stays on.
            "--disable-admission-plugins=StorageObjectInUseProtection",
            # The default reconciler would write 127.0.0.1 into the `kubernetes` Endpoints, which
            # validation rejects (loopback), and log the error every 10 s.
            "--endpoint-reconciler-type=none",
        ]

    def start_apiserver(self) -> None:
        """Start kube-apiserver (again); returns once /readyz says ok, which needs etcd up. No-op if
        running."""
        if _running(self._apiserver):
            return
        self._apiserver = proc.spawn(self._apiserver_command(), log_path=self.log_path)
        proc.wait_for("kube-apiserver /readyz", lambda: self._get("/readyz") == "ok", timeout=90,
                      interval=0.5, proc=self._apiserver, log_path=self.log_path)

    def stop_apiserver(self, kill: bool = False) -> None:
        """Stop kube-apiserver: SIGTERM (its graceful shutdown), or SIGKILL with kill=True (a crash).
        No-op if stopped."""
        _halt(self._apiserver, kill)
        self._apiserver = None

    def restart_apiserver(self, down: float = 0, *, kill: bool = False) -> None:
        """stop_apiserver(kill), `down` seconds away, start_apiserver()."""
        self.stop_apiserver(kill)
        time.sleep(down)
        self.start_apiserver()

    def ready(self) -> bool:
        """The apiserver answers /readyz with ok (etcd reachable included)."""
        return self._get("/readyz") == "ok"

    # ---

    def write_kubeconfig(self, path: Path, token: str, user: str = "user") -> Path:
        """A self-contained kubeconfig for this server with a bearer token (the admin's or, for
        instance, a ServiceAccount's from `kubectl create token`)."""
        ca = base64.b64encode(self.ca_path.read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "testbed",
            "clusters": [{"name": "testbed", "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _get(self, path: str) -> str:
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5,
                                        context=ssl.create_default_context(cafile=str(self.ca_path))) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return proc.log_tail(self.log_path, lines)

    def stop(self) -> None:
        # Without etcd the apiserver's graceful shutdown only waits out proc.stop's timeout.
        _halt(self._apiserver, kill=not _running(self._etcd))
        proc.stop(self._etcd)
        self._apiserver = self._etcd = None
        if self.dir:
            proc.remove_temp_dir(self.dir)

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _running(p: subprocess.Popen | None) -> bool:
    return p is not None and p.poll() is None


def _halt(p: subprocess.Popen | None, kill: bool = False, timeout: float = 15) -> None:
    """proc.stop(p); with kill=True SIGKILL first, so nothing gets a chance to shut down cleanly."""
    if p is None:
        return
    if kill:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.stop(p, timeout)  # reaps it and forgets it


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
