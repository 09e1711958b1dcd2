"""A real one-node Kubernetes on this machine: where users run the operator, its chart and Harper.

    with Node(ensure_tools()) as node:      # or start_node() below; Node(...).start() / .stop()
        node.kubeconfig                 # admin kubeconfig (str path)
        node.registry.address           # "127.0.0.1:PORT": push images there, pods pull them
        node.ip, node.dns_ip            # the node's InternalIP; cluster DNS (cluster.local)
        node.images["probe"]            # the small test image (e2e/tools/node-images/probe)

What runs, all as local processes started by e2e.testbed.proc: etcd and kube-apiserver (a
NodeControlPlane: kube.py's control plane, set up to serve a node), kube-controller-manager,
kube-scheduler, containerd with runc (Debian's) and the CNI bridge, the kubelet, kube-proxy in
iptables mode, and CoreDNS as a Deployment behind a fixed ClusterIP. Images come from the test
bed's in-memory registry (e2e.testbed.registry), so nothing is pulled from outside the machine.

Addresses stay inside 198.18.0.0/15, the range set aside for network tests: pods in POD_CIDR,
Services in SERVICE_CIDR, the node IP on an interface of its own. Everything the layer changes on
the host (iptables, sysctls, cgroups, mounts, interfaces, fixed paths) is undone by stop(), and by
the next start() after a crash (node_host.py); only one layer runs per machine (a lock file).
Needs root, the kernel's bridge, veth, overlay, netfilter and conntrack support, and mounted cgroup
hierarchies (proven on cgroup v1, which Kubernetes 1.35+ accepts only with failCgroupV1: false).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime
import json
import math
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import yaml

from . import node_host, proc
from .kube import ControlPlane, _halt, _openssl, make_certs
from .node_tools import CNI_BIN_DIR, RUNC, NodeTools, ensure_node_tools
from .registry import Registry
from .tools import Tools, ensure_tools

NODE_NAME = "testbed-node"
NODE_IP = "198.19.1.1"
TESTBED_RANGE = "198.18.0.0/15"  # the only non-loopback addresses the test bed may use
POD_CIDR = "198.18.0.0/16"
NODE_POD_SUBNET = "198.18.0.0/24"  # this node's share of POD_CIDR; the bridge is its .1
POD_GATEWAY = "198.18.0.1"
SERVICE_CIDR = "198.19.0.0/24"
KUBERNETES_SERVICE_IP = "198.19.0.1"  # the first address of SERVICE_CIDR, by Kubernetes' rule
DNS_IP = "198.19.0.10"
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250  # on NODE_IP, which only this layer uses
IMAGE_TAG = "testbed"
EGRESS_CHAIN = "KUBE-TESTBED-EGRESS"  # KUBE- so that node_host's clean-up removes it with the rest


def _log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


# --- certificates and kubeconfigs ---------------------------------------------------------------


def _signed_cert(d: Path, name: str, subject: str, san: str | None = None) -> None:
    """<name>.crt/.key signed by the test bed's CA (kube.make_certs made it), EC P-256 like the rest."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt"), "-days", "3650",
             "-subj", subject, "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
             *(["-addext", f"subjectAltName={san}"] if san else []))


def make_node_certs(d: Path) -> None:
    """kube.make_certs, then what a node adds: an apiserver certificate valid for the addresses pods
    and the node use, and one client certificate per component (its user and group for RBAC and
    the Node authorizer)."""
    make_certs(d)
    sans = [f"IP:{ip}" for ip in ("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP)]
    sans += [f"DNS:{n}" for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                  f"kubernetes.default.svc.{CLUSTER_DOMAIN}")]
    _signed_cert(d, "apiserver", "/CN=kube-apiserver", ",".join(sans))
    _signed_cert(d, "kubelet-serving", f"/CN={NODE_NAME}", f"IP:{NODE_IP},DNS:{NODE_NAME}")
    for name, subject in (
        ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
        ("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),  # what the Node authorizer expects
        ("kube-controller-manager", "/CN=system:kube-controller-manager"),
        ("kube-scheduler", "/CN=system:kube-scheduler"),
        ("kube-proxy", "/CN=system:kube-proxy"),  # bound to system:node-proxier by default
    ):
        _signed_cert(d, name, subject)


def write_cert_kubeconfig(path: Path, server: str, d: Path, name: str) -> Path:
    """A self-contained kubeconfig that authenticates with <name>.crt/.key from d."""
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "testbed",
        "clusters": [{"name": "testbed",
                      "cluster": {"server": server, "certificate-authority-data": b64(d / "ca.crt")}}],
        "users": [{"name": name, "user": {"client-certificate-data": b64(d / f"{name}.crt"),
                                          "client-key-data": b64(d / f"{name}.key")}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": name}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# --- the control plane, set up for a node -------------------------------------------------------


class NodeControlPlane(ControlPlane):
    """kube.py's etcd + kube-apiserver with what a real node needs, which the plain ControlPlane
    (made for API-only tests) leaves out:

    - it listens on and advertises NODE_IP: the `kubernetes` Service's endpoint must be an address
      pods can reach, and the default endpoint reconciler refuses loopback;
    - Services get SERVICE_CIDR instead of a placeholder range;
    - Node,RBAC authorization with the NodeRestriction admission plugin, so the kubelet is held to
      its own node and pods, as on a real cluster;
    - certificates for talking to the kubelet (and checking its serving certificate);
    - the default admission plugins and endpoint reconciler, now that a controller-manager runs.

    NODE_IP must be on an interface first (Node.start() sees to it).
    """

    address = NODE_IP

    def _make_certs(self, d: Path) -> None:
        make_node_certs(d)

    def _apiserver_args(self) -> list[str]:
        d = self.dir
        return [
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # logs, exec and port-forward go to the node's InternalIP, not to its name, which
            # nothing resolves.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={d / 'ca.crt'}",
        ]

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """One admin API call: (HTTP status, decoded JSON body); status 0 when unreachable."""
        request = urllib.request.Request(self.server + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=str(self.ca_path))
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                return err.code, json.loads(err.read() or b"{}")
            except ValueError:
                return err.code, {}
        except (OSError, ValueError):
            return 0, {}


# --- DNS, for the readiness check ---------------------------------------------------------------


def dns_query(server: str, name: str, qtype: int = 1, timeout: float = 2.0) -> list[str] | None:
    """The A records `server` gives for `name` (UDP, no recursion asked); None if no answer came.

    A few lines of the DNS wire format rather than a resolver package: the project has none.
    """
    qid = random.randrange(1 << 16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (server, 53))
            reply = s.recv(4096)
        except OSError:
            return None
    rid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    if rid != qid or flags & 0x000F:  # not ours, or an error rcode (NXDOMAIN, REFUSED, ...)
        return [] if rid == qid else None
    pos = 12
    for _ in range(qd):
        pos = _skip_name(reply, pos) + 4
    answers = []
    for _ in range(an):
        pos = _skip_name(reply, pos)
        rtype, _, _, length = struct.unpack("!HHIH", reply[pos:pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            answers.append(socket.inet_ntoa(reply[pos:pos + 4]))
        pos += length
    return answers


def _unix_time(timestamp: str | None) -> float:
    """A Kubernetes timestamp ("2025-01-31T12:00:00Z") as a Unix time; 0 when absent."""
    return datetime.datetime.fromisoformat(timestamp).timestamp() if timestamp else 0.0


def _skip_name(msg: bytes, pos: int) -> int:
    while msg[pos]:
        if msg[pos] & 0xC0 == 0xC0:  # a compression pointer ends the name
            return pos + 2
        pos += msg[pos] + 1
    return pos + 1


# --- the node layer -----------------------------------------------------------------------------


class Node:
    """A control plane made for a node, and one real node under it. start()/stop() or a `with`.

    Attributes once started: control_plane (NodeControlPlane), kubeconfig and server (admin),
    registry (the one given, else one it started and stops), images (name -> pushed reference:
    "pause", "probe", "coredns"), name, ip, dns_ip, cluster_domain, pod_cidr, service_cidr, dir
    (configs and logs: kubelet.log, containerd.log, ...), start_seconds (what took how long).
    """

    name, ip, dns_ip, cluster_domain = NODE_NAME, NODE_IP, DNS_IP, CLUSTER_DOMAIN
    pod_cidr, service_cidr = POD_CIDR, SERVICE_CIDR

    def __init__(self, tools: Tools, node_tools: NodeTools | None = None, registry: Registry | None = None, *,
                 lock_timeout: float = 600):
        self.tools = tools
        self.node_tools = node_tools
        self.registry = registry
        self._own_registry = registry is None
        self.lock_timeout = lock_timeout
        self.control_plane: NodeControlPlane | None = None
        self.dir = node_host.STATE_DIR
        self.images: dict[str, str] = {}
        self.start_seconds: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._kubelet_stopped_at: float | None = None
        self._lock = node_host.MachineLock()
        self._locked = False

    @property
    def kubeconfig(self) -> str:
        return self.control_plane.kubeconfig if self.control_plane else ""

    @property
    def server(self) -> str:
        return self.control_plane.server if self.control_plane else ""

    # --- start ---

    def start(self) -> "Node":
        if self._locked:  # already started
            return self
        if os.geteuid() != 0:
            raise PermissionError("the node layer runs a kubelet and containerd: it needs root")
        if self.node_tools is None:
            self.node_tools = ensure_node_tools()
        began = time.monotonic()
        try:
            self._lock.acquire(self.lock_timeout)
            self._locked = True
            if foreign := node_host.another_node_here():
                self._locked = False  # not ours to clean: leave it all as it is
                self._lock.release()
                raise RuntimeError("another Kubernetes node seems to run on this machine; the test bed's node "
                                   f"layer needs it to itself: {', '.join(foreign[:5])}")
            node_host.clean_host()  # a crashed run's leftovers
            node_host.save_host_state()
            self._start(began)
        except BaseException:
            self.stop()
            raise
        return self

    def _mark(self, what: str, began: float) -> None:
        self.start_seconds[what] = round(time.monotonic() - began, 1)

    def _start(self, began: float) -> None:
        d = self.dir
        for sub in ("pki", "containerd", "kubelet", "pod-logs", "volume-plugins", "cni/net.d", "cni/ipam",
                    "certs.d", "volumes"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._setup_network()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            # The apiserver's ~5 s start overlaps the registry's, the pushes and containerd's.
            self.control_plane = NodeControlPlane(self.tools)
            cp_future = pool.submit(self.control_plane.start)
            if self.registry is None:
                self.registry = Registry().start()
            self._push_images()
            self._write_containerd_config()
            self._spawn("containerd", [self.node_tools.containerd, "--config", d / "containerd" / "config.toml"],
                        env={"PATH": f"{self.node_tools.containerd_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
            cp_future.result()
        self._mark("control plane", began)
        proc.wait_for("containerd socket", lambda: (d / "containerd.sock").exists(), timeout=30,
                      proc=self._procs["containerd"], log_path=d / "containerd.log")
        cp = self.control_plane
        pki = d / "pki"
        for name in ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
            write_cert_kubeconfig(d / f"{name}.kubeconfig", cp.server, cp.dir, name)
        for name in ("ca.crt", "kubelet-serving.crt", "kubelet-serving.key", "sa.key"):
            (pki / name).write_bytes((cp.dir / name).read_bytes())
        self._start_controllers()
        self._write_kubelet_config()
        self._start_kubelet()
        self._start_kube_proxy()
        self._apply(self._coredns_manifests())
        proc.wait_for("node Ready", self._node_ready, timeout=120, interval=0.5,
                      proc=self._procs["kubelet"], log_path=d / "kubelet.log")
        self._mark("node Ready", began)
        proc.wait_for("CoreDNS answering", self._dns_answers, timeout=180, interval=0.5,
                      log_path=d / "kubelet.log")
        self._mark("CoreDNS answering", began)
        _log(f"node layer up in {self.start_seconds['CoreDNS answering']:.1f}s ({self.start_seconds})")

    def _setup_network(self) -> None:
        def ip(*args: str) -> None:
            done = subprocess.run(["ip", *args], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
        # A dummy interface where the kernel has the driver; else a bridge without ports, which
        # carries an address just as well.
        if subprocess.run(["ip", "link", "add", node_host.NODE_IFACE, "type", "dummy"], capture_output=True).returncode:
            ip("link", "add", node_host.NODE_IFACE, "type", "bridge")
        ip("addr", "add", f"{NODE_IP}/32", "dev", node_host.NODE_IFACE)
        ip("link", "set", node_host.NODE_IFACE, "up")
        # The whole test range goes to this interface unless a more specific route (the pods'
        # bridge) or kube-proxy's DNAT sends it elsewhere: nothing for 198.18/15 leaves by eth0.
        ip("route", "add", TESTBED_RANGE, "dev", node_host.NODE_IFACE)

    def _push_images(self) -> None:
        t = self.node_tools
        self.images["pause"] = self.registry.push_binary("testbed-pause", IMAGE_TAG, t.pause, path="/pause")
        self.images["probe"] = self.registry.push_binary("testbed-probe", IMAGE_TAG, t.probe, path="/probe")
        self.images["coredns"] = self.registry.push_binary("testbed-coredns", IMAGE_TAG, t.coredns, path="/coredns")

    def _spawn(self, name: str, cmd: list, env: dict[str, str] | None = None) -> subprocess.Popen:
        # The kubelet and kube-proxy run iptables, mount and ip: the sbin dirs must be on PATH.
        path = f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        self._procs[name] = proc.spawn(cmd, log_path=self.dir / f"{name}.log",
                                       env={**os.environ, "PATH": path, **(env or {})})
        return self._procs[name]

    # --- containerd ---

    def _write_containerd_config(self) -> None:
        d = self.dir
        c = d / "containerd"
        registry = self.registry.address
        (d / "certs.d" / registry).mkdir(parents=True, exist_ok=True)
        # containerd would try https first for a registry that is not localhost: say it is plain http.
        (d / "certs.d" / registry / "hosts.toml").write_text(
            f'server = "http://{registry}"\n\n[host."http://{registry}"]\n  capabilities = ["pull", "resolve"]\n')
        (d / "cni" / "net.d" / "10-testbed.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "testbed",
            "plugins": [
                # loopback is left out: containerd brings up lo in every pod itself.
                {"type": "bridge", "bridge": node_host.BRIDGE, "isGateway": True,
                 "ipMasq": False,  # pods talk only to the test range: no NAT to the outside
                 "hairpinMode": True,  # a pod reaches itself through its own Service
                 "ipam": {"type": "host-local", "dataDir": str(d / "cni" / "ipam"),
                          "ranges": [[{"subnet": NODE_POD_SUBNET, "gateway": POD_GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ]}, indent=1))
        q = json.dumps  # TOML basic strings are JSON strings
        (c / "config.toml").write_text(f"""\
version = 3
root = {q(str(c / 'root'))}
state = {q(str(c / 'state'))}
imports = []
# Plugins that would write to fixed host paths (/opt/containerd, /var/run/nri) or that the node
# does not use (the other snapshotters): off.
disabled_plugins = [
  "io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.btrfs",
]

[grpc]
  address = {q(str(d / 'containerd.sock'))}

[ttrpc]
  address = {q(str(d / 'containerd.sock.ttrpc'))}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {q(self.images['pause'])}
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = {q(str(d / 'certs.d'))}

[plugins."io.containerd.cri.v1.runtime"]
  # Without CAP_SYS_RESOURCE containerd cannot set a container's oom_score_adj below its own,
  # and runc then fails every sandbox with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not /var/run/netns: the clean-up finds them.
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = {q(RUNC)}
        SystemdCgroup = false  # no systemd here: the kubelet uses the cgroupfs driver too
        Root = {q(str(c / 'runc'))}
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [{q(CNI_BIN_DIR)}]
    conf_dir = {q(str(d / 'cni' / 'net.d'))}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = {q(str(c / 's'))}
""")

    # --- Kubernetes components ---

    def _start_controllers(self) -> None:
        d = self.dir
        kcm_cfg = d / "kube-controller-manager.kubeconfig"
        self._spawn("kube-controller-manager", [
            self.node_tools.kube_controller_manager, f"--kubeconfig={kcm_cfg}",
            f"--authentication-kubeconfig={kcm_cfg}", f"--authorization-kubeconfig={kcm_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={proc.free_port()}", f"--cert-dir={d / 'pki' / 'kcm'}",
            "--leader-elect=false",  # one instance; electing costs seconds at every start
            # Each controller acts as its own ServiceAccount, as in kubeadm clusters; the token
            # controller signs their tokens and the root CA publisher fills kube-root-ca.crt.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={d / 'pki' / 'sa.key'}",
            f"--root-ca-file={d / 'pki' / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cluster-cidr={POD_CIDR}",
            "--cluster-name=testbed", "--controllers=*",
        ])
        sched_cfg = d / "kube-scheduler.kubeconfig"
        self._spawn("kube-scheduler", [
            self.node_tools.kube_scheduler, f"--kubeconfig={sched_cfg}",
            f"--authentication-kubeconfig={sched_cfg}", f"--authorization-kubeconfig={sched_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={proc.free_port()}", "--leader-elect=false",
        ])

    def _write_kubelet_config(self) -> None:
        d = self.dir
        (d / "resolv.conf").write_text(
            "# The kubelet's resolvConf. No nameserver: pods with dnsPolicy Default must not reach\n"
            "# outside the machine; cluster DNS pods get theirs from clusterDNS.\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": proc.free_port(),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(d / "pki" / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(d / "pki" / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(d / "pki" / "kubelet-serving.key"),
            "containerRuntimeEndpoint": f"unix://{d / 'containerd.sock'}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": node_host.make_kubelet_cgroup(),  # pods under a cgroup of ours (see node_host)
            "failCgroupV1": False,  # 1.35+ refuses cgroup v1 hosts unless told otherwise
            "failSwapOn": False,
            "oomScoreAdj": 0,  # the default -999 needs CAP_SYS_RESOURCE, which root lacks here
            "resolvConf": str(d / "resolv.conf"),
            "clusterDNS": [DNS_IP], "clusterDomain": CLUSTER_DOMAIN,
            "podLogsDir": str(d / "pod-logs"), "volumePluginDir": str(d / "volume-plugins"),
            "nodeStatusUpdateFrequency": "2s",  # Ready shows sooner; one small PATCH when it changes
            "serializeImagePulls": False,
            # A shared CI machine's disk and memory are not the node's to guard: evict only when
            # truly out, and keep images (they are re-pushed and re-pulled every run anyway).
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
        }
        (d / "kubelet-config.yaml").write_text(yaml.safe_dump(config))

    def _start_kubelet(self) -> None:
        d = self.dir
        self._spawn("kubelet", [
            self.node_tools.kubelet, f"--config={d / 'kubelet-config.yaml'}",
            f"--kubeconfig={d / 'kubelet.kubeconfig'}", f"--root-dir={d / 'kubelet'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
        ])

    # The kubelet alone, for fault tests. Pods keep running while it is away: containerd and its
    # shims hold them, and a kubelet that starts finds them again through the CRI.

    def stop_kubelet(self, kill: bool = False) -> None:
        """Stop the kubelet: SIGTERM, as systemd would, or SIGKILL with kill=True (a crash). No-op
        if stopped. The Node stays Ready in the API until the node lifecycle controller notices
        (its grace period, tens of seconds)."""
        _halt(self._procs.pop("kubelet", None), kill, timeout=10)
        self._kubelet_stopped_at = time.time()

    def start_kubelet(self, timeout: float = 120) -> None:
        """Start the kubelet again (same arguments and config) and wait until this kubelet, not the
        one before it, has reported the Node Ready. No-op if running."""
        if (p := self._procs.get("kubelet")) is not None and p.poll() is None:
            return
        stopped = self._kubelet_stopped_at or time.time()
        # Heartbeats carry whole seconds: only one from a later second than the stop can be the
        # new kubelet's, so it must not start within the second the old one died.
        time.sleep(max(0.0, math.floor(stopped) + 1 - time.time()))
        self._start_kubelet()
        proc.wait_for("node Ready after the kubelet's restart",
                      lambda: self._node_ready(heartbeat_after=math.floor(stopped)), timeout=timeout,
                      interval=0.5, proc=self._procs["kubelet"], log_path=self.dir / "kubelet.log")

    def restart_kubelet(self, down: float = 0, *, kill: bool = False) -> None:
        """stop_kubelet(kill), `down` seconds away, start_kubelet()."""
        self.stop_kubelet(kill)
        time.sleep(down)
        self.start_kubelet()

    def _start_kube_proxy(self) -> None:
        d = self.dir
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(d / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME, "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{proc.free_port()}",
            "metricsBindAddress": f"127.0.0.1:{proc.free_port()}",
            "mode": "iptables", "clusterCIDR": POD_CIDR,
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # 0 leaves the host's conntrack table size and timeouts alone (no CAP_SYS_RESOURCE,
            # and they are the machine's, not the test bed's).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # true would set route_localnet on the host to serve NodePorts on 127.0.0.1.
            "iptables": {"localhostNodePorts": False},
        }
        (d / "kube-proxy-config.yaml").write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [self.node_tools.kube_proxy, f"--config={d / 'kube-proxy-config.yaml'}"])
        self._add_egress_guard()

    def _add_egress_guard(self) -> None:
        """Pods may reach the test range and nothing beyond: a FORWARD rule rejects the rest, so a
        misbehaving image cannot send traffic off the machine through the host's default route."""
        run = lambda *a: subprocess.run(["iptables", "-w", *a], capture_output=True, text=True)  # noqa: E731
        run("-N", EGRESS_CHAIN)
        run("-A", EGRESS_CHAIN, "-d", TESTBED_RANGE, "-j", "RETURN")
        run("-A", EGRESS_CHAIN, "-j", "REJECT")
        done = run("-I", "FORWARD", "1", "-i", node_host.BRIDGE, "!", "-o", node_host.BRIDGE, "-j", EGRESS_CHAIN)
        if done.returncode:
            raise RuntimeError(f"iptables: {done.stderr}")

    # --- cluster add-ons ---

    def _coredns_manifests(self) -> list[dict]:
        ns, labels = "kube-system", {"k8s-app": "kube-dns"}
        corefile = f"""\
.:53 {{
    errors
    health {{
        lameduck 2s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        ttl 30
    }}
    cache 30
    loadbalance
    reload
}}
"""
        # No `forward`: names outside the cluster get REFUSED, since the test bed may not send DNS
        # (or anything) beyond the machine.
        return [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "system:coredns"},
             "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                        "verbs": ["list", "watch"]},
                       {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                        "verbs": ["list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "system:coredns"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
             "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}]},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": ns},
             "data": {"Corefile": corefile}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
             "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels}, "spec": {
                          "serviceAccountName": "coredns", "dnsPolicy": "Default",
                          "priorityClassName": "system-cluster-critical",
                          # Scheduled as soon as the node registers; the kubelet starts it once
                          # the pod network is up. Shaves seconds off every start.
                          "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                           "effect": "NoSchedule"}],
                          "containers": [{
                              "name": "coredns", "image": self.images["coredns"],
                              "command": ["/coredns", "-conf", "/etc/coredns/Corefile"],
                              "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                        {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                              "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                                 "periodSeconds": 1, "failureThreshold": 3},
                              "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                                "periodSeconds": 10, "failureThreshold": 5},
                              "resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                            "limits": {"memory": "128Mi"}},
                              "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                          }],
                          "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                      }}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
             "spec": {"clusterIP": DNS_IP, "selector": labels,
                      "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
        ]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """kubectl as the admin of this cluster; raises with its stderr unless check=False."""
        cmd = [str(self.node_tools.kubectl), "--kubeconfig", self.kubeconfig, *map(str, args)]
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"kubectl {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
        return done

    def _apply(self, objects: list[dict]) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    # --- readiness ---

    def _node_ready(self, heartbeat_after: float | None = None) -> bool:
        """Ready, and ready for pods: the scheduler skips the node until the node lifecycle
        controller has removed its not-ready (or, after a long kubelet outage, unreachable) taint.
        With heartbeat_after (a Unix time), only a Ready condition the kubelet reported later counts."""
        status, node = self.control_plane.api("GET", f"/api/v1/nodes/{NODE_NAME}")
        if status != 200:
            return False
        ready = [c for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            return False
        if heartbeat_after is not None and _unix_time(ready[0].get("lastHeartbeatTime")) <= heartbeat_after:
            return False
        return not any(t["key"] in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
                       for t in node.get("spec", {}).get("taints", []))

    def _dns_answers(self) -> bool:
        # From the host through kube-proxy's DNAT to the CoreDNS pod: the same path pods use.
        return dns_query(DNS_IP, f"kubernetes.default.svc.{CLUSTER_DOMAIN}") == [KUBERNETES_SERVICE_IP]

    # --- looking at it ---

    def pids(self) -> dict[str, list[int]]:
        """Every process of the layer by role (for memory figures and leak checks)."""
        out: dict[str, list[int]] = {}
        if self.control_plane is not None:
            for role, p in (("etcd", self.control_plane._etcd), ("kube-apiserver", self.control_plane._apiserver)):
                if p is not None and p.poll() is None:
                    out[role] = [p.pid]
        for role, p in self._procs.items():
            if p.poll() is None:
                out[role] = [p.pid]
        registry_proc = getattr(self.registry, "_proc", None)
        if registry_proc is not None and registry_proc.poll() is None:
            out["registry"] = [registry_proc.pid]
        known = {pid for pids in out.values() for pid in pids}
        for pid, why in node_host.layer_pids().items():
            if pid in known:
                continue
            role = "pods" if why.startswith("in cgroup") else (
                "containerd-shims" if "containerd-shim" in why else "other")
            out.setdefault(role, []).append(pid)
        return out

    def memory_mib(self) -> dict[str, float]:
        """Resident memory (VmRSS) by role, in MiB, plus "total"."""
        def rss(pid: int) -> int:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
            except OSError:
                pass
            return 0
        out = {role: round(sum(rss(p) for p in pids) / 2**20, 1) for role, pids in self.pids().items()}
        out["total"] = round(sum(out.values()), 1)
        return out

    def log_tails(self, lines: int = 60) -> list[tuple[str, str]]:
        out = [(f"{name} log (tail)", proc.log_tail(self.dir / f"{name}.log", lines)) for name in self._procs]
        if self.control_plane is not None and self.control_plane.dir:
            out.append(("kube-apiserver log (tail)", self.control_plane.log_tail(lines)))
        return out

    # --- stop ---

    def stop(self) -> None:
        """Stop every process (waiting for each), undo every host change, release the machine."""
        # The kubelet first, so it does not restart what goes away under it; containerd last.
        for name in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager", "containerd"):
            proc.stop(self._procs.pop(name, None), timeout=10)
        for p in self._procs.values():
            proc.stop(p)
        self._procs.clear()
        try:
            if self._locked:
                # The pods next: CoreDNS's watch would hold the apiserver's graceful shutdown open.
                node_host.kill_layer_processes()
            if self.control_plane is not None:
                self.control_plane.stop()
                self.control_plane = None
            if self._own_registry and self.registry is not None:
                self.registry.stop()
                self.registry = None
        finally:
            if self._locked:
                try:
                    node_host.clean_host()  # shims, pods, mounts, cgroups, iptables, links, sysctls, paths
                finally:
                    self._lock.release()
                    self._locked = False

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def start_node(registry: Registry | None = None) -> Iterator[Node]:
    """Build what is missing (first time only), start the node layer, yield it, stop it."""
    node = Node(ensure_tools(), ensure_node_tools(), registry)
    with node:
        yield node
