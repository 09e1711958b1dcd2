"""The programs and Debian packages the one-node layer (node.py) needs, built or installed once.

Built like the control plane's tools (tools.py): from the small pinned modules under e2e/tools/,
into the same cache, one folder per name+version, through tools._cached (atomic, locked). Each
group is ONE `go build -o DIR pkg...`: the linker runs per binary, but every package they share is
compiled once, and the Kubernetes group uses exactly kube-apiserver's flags (-trimpath, the cgo
setting, "-s -w" and the version stamps) so that the Go build cache serves it what the
apiserver's build already compiled.

runc, the CNI plugins and iptables come from Debian: they are what a node's distribution ships, and
the Go module proxy does not serve runc's C-dependent build. They are installed with apt-get only
when missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from . import tools
from .tools import TOOLS_DIR, ToolBuildError, _cached, _log, _required_version, k8s_version

K8S_MODULE = TOOLS_DIR / "kube-apiserver"  # one module pins every Kubernetes command
CONTAINERD_MODULE = TOOLS_DIR / "containerd"
COREDNS_MODULE = TOOLS_DIR / "coredns"
IMAGES_MODULE = TOOLS_DIR / "node-images"

K8S_COMMANDS = ("kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler")
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
IMAGE_PROGRAMS = ("pause", "probe")

# Debian package -> a file it installs that the node layer runs (its absence means "install it").
DEBIAN_PACKAGES = {
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "iproute2": "/usr/sbin/ip",
}
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"


@dataclasses.dataclass(frozen=True)
class NodeTools:
    kubelet: Path
    kube_proxy: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    containerd: Path
    containerd_shim: Path
    ctr: Path
    coredns: Path
    pause: Path  # static programs that become images (Registry.push_binary)
    probe: Path
    kubectl: Path

    @property
    def containerd_dir(self) -> Path:
        """Where containerd finds its shim (it looks the shim up on PATH)."""
        return self.containerd_shim.parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """tools._run with extra environment (CGO_ENABLED) for the builds that need it."""
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise ToolBuildError(f"{' '.join(cmd)} (in {cwd}) failed with {done.returncode}:\n{done.stdout[-8000:]}")


def _go_build_many(module_dir: Path, packages: list[str], out_dir: Path, ldflags: list[str], *,
                   tags: str = "", env: dict[str, str] | None = None) -> None:
    if not shutil.which("go"):
        raise ToolBuildError("the `go` toolchain is not on PATH; it is needed to build the test bed")
    # With several packages, -o names a directory and each main package lands there by its name.
    cmd = ["go", "build", "-trimpath", *(["-tags", tags] if tags else []),
           "-ldflags", " ".join(["-s", "-w", *ldflags]), "-o", str(out_dir) + os.sep, *packages]
    _run(cmd, cwd=module_dir, env=env)


def k8s_ldflags(version: str) -> list[str]:
    """The stamps tools.ensure_kube_apiserver puts into kube-apiserver, for the other commands
    (the kubelet reports its version to the API: unstamped it registers as v0.0.0-master)."""
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.gitCommit=", f"-X {pkg}.buildDate={tools.BUILD_DATE}"]


def _sources_digest(module_dir: Path) -> str:
    """A short digest of a module's own files: their cache entry is rebuilt when they change."""
    h = hashlib.sha256()
    for path in sorted(p for p in module_dir.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(module_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def ensure_k8s_node_binaries() -> dict[str, Path]:
    version = k8s_version()
    pkgs = [f"k8s.io/kubernetes/cmd/{name}" for name in K8S_COMMANDS]
    first = _cached("kube-node", version, K8S_COMMANDS[0],
                    lambda tmp: _go_build_many(K8S_MODULE, pkgs, tmp, k8s_ldflags(version)))
    return {name: first.parent / name for name in K8S_COMMANDS}


def ensure_containerd() -> dict[str, Path]:
    version = _required_version(CONTAINERD_MODULE / "go.mod", "github.com/containerd/containerd/v2")
    pkg = "github.com/containerd/containerd/v2"
    ldflags = [f"-X {pkg}/version.Version={version}", f"-X {pkg}/version.Revision=",
               f"-X {pkg}/version.Package={pkg}"]
    # Static (no cgo) like upstream's release builds; no_btrfs drops the btrfs snapshotter, whose
    # cgo headers a plain machine lacks (the overlayfs snapshotter is the one used).
    first = _cached("containerd", version, CONTAINERD_COMMANDS[0], lambda tmp: _go_build_many(
        CONTAINERD_MODULE, [f"{pkg}/cmd/{name}" for name in CONTAINERD_COMMANDS], tmp, ldflags,
        tags="no_btrfs", env={"CGO_ENABLED": "0"}))
    return {name: first.parent / name for name in CONTAINERD_COMMANDS}


def ensure_coredns() -> Path:
    version = _required_version(COREDNS_MODULE / "go.mod", "github.com/coredns/coredns")
    # The plugin list lives in main.go, so its digest is part of the cache key.
    return _cached("coredns", f"{version}-{_sources_digest(COREDNS_MODULE)}", "coredns", lambda tmp: _go_build_many(
        COREDNS_MODULE, ["."], tmp, [], env={"CGO_ENABLED": "0"}))


def ensure_image_programs() -> dict[str, Path]:
    # Static: they are the only file of their image, with no libc beside them.
    first = _cached("node-images", _sources_digest(IMAGES_MODULE), IMAGE_PROGRAMS[0], lambda tmp: _go_build_many(
        IMAGES_MODULE, [f"./{name}" for name in IMAGE_PROGRAMS], tmp, [], env={"CGO_ENABLED": "0"}))
    return {name: first.parent / name for name in IMAGE_PROGRAMS}


def ensure_debian_packages(packages: dict[str, str] = DEBIAN_PACKAGES) -> list[str]:
    """Install (apt-get) the packages whose marker file is missing; returns what was installed."""
    missing = [name for name, marker in packages.items() if not Path(marker).exists()]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise ToolBuildError(f"the node layer needs the Debian packages {', '.join(missing)}; "
                             f"run as root or install them: apt-get install {' '.join(missing)}")
    if not shutil.which("apt-get"):
        raise ToolBuildError(f"the node layer needs {', '.join(missing)} and this machine has no apt-get")
    _log(f"installing Debian packages {', '.join(missing)} (first time only)...")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], cwd=Path("/"), env=env)
    # Wait for the dpkg lock rather than fail when another apt-get is running on the machine.
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", *missing],
         cwd=Path("/"), env=env)
    still = [name for name in missing if not Path(packages[name]).exists()]
    if still:
        raise ToolBuildError(f"apt-get installed {', '.join(missing)} but {', '.join(packages[n] for n in still)} "
                             "is still missing")
    return missing


def ensure_node_tools() -> NodeTools:
    """Build (first time only) and return everything the node layer runs.

    The builds run one after the other: each already uses both cores, and side by side they
    would only fight over memory and the Go build cache's lock.
    """
    ensure_debian_packages()
    k8s = ensure_k8s_node_binaries()
    containerd = ensure_containerd()
    coredns = ensure_coredns()
    images = ensure_image_programs()
    return NodeTools(
        kubelet=k8s["kubelet"], kube_proxy=k8s["kube-proxy"],
        kube_controller_manager=k8s["kube-controller-manager"], kube_scheduler=k8s["kube-scheduler"],
        containerd=containerd["containerd"], containerd_shim=containerd["containerd-shim-runc-v2"],
        ctr=containerd["ctr"], coredns=coredns, pause=images["pause"], probe=images["probe"],
        kubectl=tools.ensure_kubectl())


if __name__ == "__main__":
    print(ensure_node_tools())
