"""The operator's and Harper's container images, built without Docker and cached by their inputs.

Recipe (everything comes from Debian, PyPI and npm, the registries this project may use):

- OS layer: ``mmdebstrap --variant=minbase`` of Debian bookworm plus the image's runtime packages
  (the operator: python3 + python3-venv, Python 3.11; Harper: nodejs, Node 18), without man pages,
  docs (copyright files stay), info pages and translations. Device nodes are left out: the runtime
  provides /dev.
- App layer, operator: a virtualenv at /opt/harper-operator, made by the image's own python3 inside
  a chroot of the OS layer, with the project installed non-editable from a wheel of the working tree
  and every dependency pinned by constraints.txt (wheels downloaded on the host; pip in the chroot
  installs offline). pip itself is removed afterwards: nothing installs at run time.
- App layer, Harper: harperdb from e2e/harper/'s lock, `npm install`ed on the host with install
  scripts off (see _npm_install_harper for why), at /opt/harper.

Each piece lives in the cache (tools.cache_dir()) under a folder whose name carries a hash of its
inputs: changing a source file of the operator, the lock, a package list, an image's config or
RECIPE_REVISION (bumped when the recipe itself changes) builds what changed anew; everything else is
reused. The images are first assembled by crane in a registry, then
kept as OCI layouts next to their layers, so later pushes only upload blobs.

Needs root (mmdebstrap in root mode, chroot, mount namespaces); missing Debian tools are installed
with apt-get by ensure_debian_packages().

``python -m e2e.testbed.images [--push ADDRESS]`` (``make image``) builds both, pushes them, checks
them with crane and prints their references, sizes and build times.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

from . import tools
from .registry import Registry, ensure_crane, ensure_registry

REPO_DIR = tools.E2E_DIR.parent

# Bump when the recipe changes in a way the hashed inputs do not show (e.g. a new trimming rule).
RECIPE_REVISION = "1"

DEBIAN_SUITE = "bookworm"
# The mirror can be overridden (HARPER_OPERATOR_DEBIAN_MIRROR=http://host/debian); security updates
# come from the matching -security archive next to it.
DEBIAN_MIRROR = os.environ.get("HARPER_OPERATOR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
OPERATOR_PACKAGES = ("python3", "python3-venv")
HARPER_PACKAGES = ("nodejs",)
# mmdebstrap builds the OS layers; mount, util-linux (unshare), coreutils (chroot) and iproute2 (a
# loopback in a network namespace of its own) run programs inside them.
HOST_PACKAGES = ("mmdebstrap", "mount", "util-linux", "coreutils", "tar", "iproute2")

# Both images run as this uid/gid, like the chart's pod securityContext (runAsUser 65532).
NONROOT = 65532
OPERATOR_VENV = "/opt/harper-operator"
HARPER_HOME = "/opt/harper"
# Harper keeps everything it writes under ROOTPATH and $HOME; both sit on the pod's volume.
HARPER_DATA = "/data"
HARPER_PORTS = ("9925/tcp", "9926/tcp", "9933/tcp", "1883/tcp", "8883/tcp")
# What a pod must set for Harper to start unattended (docs/harper-semantics.md section 0); the image
# does not accept Harper's terms or pick credentials on the user's behalf.
HARPER_POD_ENV = ("TC_AGREEMENT", "HDB_ADMIN_USERNAME", "HDB_ADMIN_PASSWORD", "REPLICATION_HOSTNAME",
                  "OPERATIONSAPI_NETWORK_PORT")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageBuildError(tools.ToolBuildError):
    """An image could not be built; the message says which step and carries its output."""


def _log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 1800) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ImageBuildError(f"{' '.join(map(str, cmd))} failed with {done.returncode}:\n{done.stdout[-8000:]}")
    return done.stdout


# --- Debian packages on the build machine -------------------------------------------------------

def missing_debian_packages(packages) -> list[str]:
    missing = []
    for name in packages:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if done.returncode != 0 or not done.stdout.endswith(" installed"):
            missing.append(name)
    return missing


def ensure_debian_packages(packages) -> None:
    """apt-get install what is missing of `packages` (apt-get update first). Needs root."""
    missing = missing_debian_packages(packages)
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageBuildError(f"the image build needs the Debian packages {', '.join(missing)}; they are "
                              f"missing and only root can install them: apt-get install {' '.join(missing)}")
    root = tools.cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    # Two builds starting together would race for dpkg's lock; the second waits here instead.
    with open(root / ".apt-get.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = missing_debian_packages(packages)
        if not missing:
            return
        _log(f"apt-get install {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update"], env=env, timeout=600)
        _run(["apt-get", "install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", *missing],
             env=env, timeout=1200)
    still = missing_debian_packages(packages)
    if still:
        raise ImageBuildError(f"apt-get did not install {', '.join(still)}")


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(f"{what} needs root (mmdebstrap in root mode, chroot and mount namespaces)")


# --- hashing inputs -----------------------------------------------------------------------------

def _digest(*parts, base: Path = REPO_DIR) -> str:
    """sha256 over strings, bytes and files (by name relative to `base` and content, folders
    recursively, bytecode caches left out)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if not part.exists():
                raise ImageBuildError(f"an input of the image is missing: {part}")
            files = [part] if part.is_file() else sorted(p for p in part.rglob("*") if p.is_file()
                                                         and "__pycache__" not in p.parts)
            for f in files:
                h.update(str(f.relative_to(base) if f.is_relative_to(base) else f).encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
        else:
            h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# --- layers -------------------------------------------------------------------------------------

def write_layer(tar_path: Path, src: Path, prefix: str, *, uid: int = 0, gid: int = 0,
                extra_dirs: dict[str, tuple[int, int, int]] | None = None, only: set[Path] | None = None) -> None:
    """Write `src`'s tree as an uncompressed layer tar with its contents at `prefix` (e.g.
    "opt/harper"), every entry owned by uid:gid, in sorted order so equal trees give equal tars.
    extra_dirs adds empty folders: {"data": (mode, uid, gid)}. only: just these paths (relative to
    src) and the folders that hold them, for a layer that adds files to the one below."""
    prefix = prefix.strip("/")

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        # No group- or world-writable files: the image is read by a non-root uid, never written.
        info.mode &= ~0o022
        return info

    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        parts = prefix.split("/")
        for i in range(1, len(parts)):  # parent folders, so the layer stands on its own
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, (mode, duid, dgid) in sorted((extra_dirs or {}).items()):
            info = tarfile.TarInfo(name.strip("/"))
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, mode, duid, dgid, 0
            tar.addfile(info)
        tar.add(src, arcname=prefix, recursive=False, filter=owned)
        paths = sorted(src.rglob("*")) if only is None else sorted(
            {src / p for p in only} | {src / d for p in only for d in p.parents if d != Path(".")})
        for path in paths:
            tar.add(path, arcname=f"{prefix}/{path.relative_to(src)}", recursive=False, filter=owned)


# --- running programs inside a root filesystem --------------------------------------------------

def rootfs_command(root: Path, argv: list[str], *, env: dict[str, str] | None = None, user: str | None = None,
                   workdir: str | None = None, read_only: bool = False, network: bool = False,
                   binds: dict[str, Path] | None = None) -> list[str]:
    """The host command that runs argv inside the root filesystem `root` roughly as a container
    runtime would: its own mount and PID namespaces (everything it starts dies with it, and no mount
    outlives it), a fresh /proc, the host's /dev, a tmpfs /tmp, exactly `env` as environment, `user`
    ("uid:gid") as identity. read_only mounts the root read-only (like readOnlyRootFilesystem);
    network=False gives it a network namespace of its own with only loopback up, network=True the
    host's. binds: {"/data": host_dir}, mounted read-write."""
    _require_root("running a program in a root filesystem")
    root = Path(root).resolve()
    for mountpoint in ("dev", "proc", "tmp", *(p.strip("/") for p in (binds or {}))):
        (root / mountpoint).mkdir(parents=True, exist_ok=True)
    # The mount steps run in the host's /bin/sh inside the new namespaces; "$@" is the final command.
    script = ["set -e", 'R="$1"; shift']
    if not network:
        script.append("ip link set lo up")
    script.append('mount --bind "$R" "$R"')  # a mount of its own, so it can be made read-only
    for target, source in (binds or {}).items():
        script.append(f'mount --bind {_sh(str(Path(source).resolve()))} "$R"/{_sh(target.strip("/"))}')
    script += ['mount --rbind /dev "$R/dev"', 'mount -t proc proc "$R/proc"',
               'mount -t tmpfs -o mode=1777,size=256m tmpfs "$R/tmp"']
    if read_only:
        script.append('mount -o remount,bind,ro "$R"')
    script.append('exec "$@"')
    inner = ["chroot"]
    if user:
        inner.append(f"--userspec={user}")
        inner.append(f"--groups={user.split(':')[-1]}")  # no supplementary groups from the host
    inner += [str(root), "/usr/bin/env", "-i"]
    if workdir:
        inner.append(f"--chdir={workdir}")
    inner += [f"{k}={v}" for k, v in (env or {"PATH": BASE_PATH}).items()]
    inner += list(argv)
    return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
            *([] if network else ["--net"]), "/bin/sh", "-c", "\n".join(script), "sh", str(root), *inner]


def run_in_rootfs(root: Path, argv: list[str], *, timeout: float = 600, check: bool = True,
                  **options) -> subprocess.CompletedProcess:
    """Run rootfs_command(root, argv, **options) to its end; stdout and stderr together, as text.
    check raises ImageBuildError on a non-zero exit."""
    cmd = rootfs_command(root, argv, **options)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env={"PATH": BASE_PATH})
    if check and done.returncode != 0:
        raise ImageBuildError(f"in {root}: {' '.join(argv)} failed with {done.returncode}:\n{done.stdout[-8000:]}")
    return done


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def extract_rootfs(tar_path: Path, dest: Path) -> Path:
    """Unpack a layer or `crane export` tar as root, keeping numeric owners and modes."""
    _require_root("unpacking a root filesystem")
    dest.mkdir(parents=True, exist_ok=True)
    _run(["tar", "--numeric-owner", "--same-permissions", "-xf", tar_path, "-C", dest])
    return dest


# --- the Debian OS layer ------------------------------------------------------------------------

def _debian_sources() -> list[str]:
    security = DEBIAN_MIRROR.rstrip("/") + "-security"
    return [f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE} main", f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main",
            f"deb {security} {DEBIAN_SUITE}-security main"]


def _mmdebstrap_options(packages) -> list[str]:
    return [
        "--mode=root", "--variant=minbase", "--format=tar", f"--include={','.join(packages)}",
        '--aptopt=APT::Install-Recommends "false"',
        # Bookworm's init-system-helpers would pull usrmerge and with it perl (25 MB); this hook
        # lays out the merged /usr itself and installs usr-is-merged instead.
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        # What Debian's own slim images leave out; copyright files stay.
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/lintian/*",
        # mmdebstrap copies the build machine's resolver and name in; the runtime provides its own.
        '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
        # The runtime provides /dev; device nodes in a layer are refused by rootless runtimes.
        "--skip=output/dev",
    ]


def debian_os_layer(packages) -> Path:
    """Debian bookworm minbase + `packages` as one uncompressed layer tar (cached by its inputs)."""
    options = _mmdebstrap_options(packages)
    sources = _debian_sources()
    key = _digest(DEBIAN_SUITE, *options, *sources, RECIPE_REVISION)

    def build(tmp: Path) -> None:
        _require_root("mmdebstrap (root mode)")
        ensure_debian_packages(HOST_PACKAGES)
        _log(f"mmdebstrap {DEBIAN_SUITE} minbase + {', '.join(packages)}")
        _run(["mmdebstrap", *options, DEBIAN_SUITE, tmp / "os.tar", *sources], timeout=1800)

    return tools._cached(f"debian-{DEBIAN_SUITE}", key, "os.tar", build)


# --- the operator -------------------------------------------------------------------------------

OPERATOR_SOURCES = ("pyproject.toml", "constraints.txt", "README.md", "operator/harper_operator")
# The pip that Debian's python3-venv ships as a wheel: the image's Python runs it straight from the wheel
# (pip supports that), so no layer has to hold a pip of its own.
DEBIAN_PIP_WHEELS = "usr/share/python-wheels"


def operator_version() -> str:
    return tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["version"]


def operator_dependencies(repo_dir: Path = REPO_DIR) -> list[str]:
    return sorted(tomllib.loads((repo_dir / "pyproject.toml").read_text())["project"]["dependencies"])


def operator_dependencies_key(os_key: str, repo_dir: Path = REPO_DIR) -> str:
    """What the virtualenv's dependencies are made from: the OS layer, the declared dependencies and
    their pins. An edit of the operator's code keeps the key, so only the small layer above is rebuilt."""
    return _digest(os_key, json.dumps(operator_dependencies(repo_dir)), repo_dir / "constraints.txt",
                   RECIPE_REVISION, base=repo_dir)


def operator_inputs_key(dependencies_key: str, repo_dir: Path = REPO_DIR) -> str:
    """What the operator's own layer is made from: the dependencies' layer below it and the project's
    sources (the files operator/Dockerfile copies). Any edit there gives a new key, so a new image."""
    return _digest(dependencies_key, *(repo_dir / s for s in OPERATOR_SOURCES), RECIPE_REVISION, base=repo_dir)


def _pinned_constraints(dest: Path) -> Path:
    # constraints.txt pins every dependency; a `-e` line (the project itself, from `pip freeze`) is no
    # valid constraint, so it is dropped, as operator/Dockerfile does.
    lines = (REPO_DIR / "constraints.txt").read_text().splitlines()
    dest.write_text("".join(f"{line}\n" for line in lines if not line.startswith("-e ")))
    return dest


def _pip_in_image(root: Path) -> str:
    found = sorted((root / DEBIAN_PIP_WHEELS).glob("pip-*.whl"))
    if not found:
        raise ImageBuildError(f"no pip wheel under /{DEBIAN_PIP_WHEELS} in the operator's OS layer")
    return f"/{DEBIAN_PIP_WHEELS}/{found[-1].name}/pip"


def _install_in_image(root: Path, requirements: list[str], *extra: str) -> None:
    """pip install, inside the image's root filesystem and offline: everything comes from /wheels."""
    python = f"{OPERATOR_VENV}/bin/python"
    run_in_rootfs(root, [python, _pip_in_image(root), "install", "--no-index", "--find-links", "/wheels",
                         "--no-cache-dir", "--disable-pip-version-check", "-c", "/wheels/constraints.txt",
                         *extra, *requirements], env={"PATH": BASE_PATH, "HOME": "/root"}, timeout=900)


def _operator_dependencies_layer(os_layer: Path) -> Path:
    """The virtualenv with the operator's pinned dependencies and no pip: the slow part of the image
    (downloads, unpacking, bytecode), rebuilt only when the dependencies or their pins change."""
    key = operator_dependencies_key(os_layer.parent.name)

    def build(tmp: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=".operator-deps-", dir=tools.cache_dir()))
        try:
            wheels = work / "wheels"
            wheels.mkdir()
            constraints = _pinned_constraints(wheels / "constraints.txt")
            # Wheels for the image's Python (3.11, glibc 2.36), whatever Python runs this build. pip
            # matches --platform literally, so every manylinux level bookworm's glibc 2.36 runs is named
            # (manylinux2014 also stands for 2010 and 1).
            _log("downloading the pinned dependencies")
            platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + ["manylinux2014_x86_64"]
            _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "download",
                  "--only-binary=:all:", *(a for p in platforms for a in ("--platform", p)),
                  "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                  "-c", constraints, "-d", wheels, *operator_dependencies()], timeout=900)
            root = extract_rootfs(os_layer, work / "root")
            shutil.copytree(wheels, root / "wheels")
            # The image's own python3 makes the venv, so its links point at /usr/bin/python3 there.
            _log("installing the dependencies into /opt/harper-operator (chroot, offline)")
            run_in_rootfs(root, ["/usr/bin/python3", "-m", "venv", "--without-pip", OPERATOR_VENV],
                          env={"PATH": BASE_PATH, "HOME": "/root"})
            _install_in_image(root, operator_dependencies())
            write_layer(tmp / "deps.tar", root / OPERATOR_VENV.strip("/"), OPERATOR_VENV)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return tools._cached("operator-deps", key, "deps.tar", build)


def _operator_layer(os_layer: Path, deps_layer: Path) -> Path:
    """The operator itself, installed into the dependencies' virtualenv: only the files that install
    adds (the package, its metadata, its two commands), so a code change rebuilds seconds, not a venv."""
    key = operator_inputs_key(deps_layer.parent.name)

    def build(tmp: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=".operator-work-", dir=tools.cache_dir()))
        try:
            src, wheels = work / "src", work / "wheels"
            for name in OPERATOR_SOURCES:
                source = REPO_DIR / name
                if source.is_dir():
                    shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    (src / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, src / name)
            wheels.mkdir()
            _pinned_constraints(wheels / "constraints.txt")
            _log("building the operator's wheel from the working tree")
            _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "wheel", "--no-deps",
                  "-w", wheels, src], timeout=600)
            root = extract_rootfs(os_layer, work / "root")
            extract_rootfs(deps_layer, root)
            shutil.copytree(wheels, root / "wheels")
            venv = root / OPERATOR_VENV.strip("/")
            below = _tree_state(venv)
            _log("installing the operator into /opt/harper-operator (chroot, offline)")
            _install_in_image(root, [f"harper-operator=={operator_version()}"], "--no-deps")
            # Its dependencies are all below it: --help imports every module the operator runs.
            run_in_rootfs(root, [f"{OPERATOR_VENV}/bin/harper-operator", "--help"],
                          env={"PATH": BASE_PATH, "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1"})
            now = _tree_state(venv)
            changed = sorted(p for p in below if now.get(p) != below[p])
            if changed:  # a layer can add files; changing the layer below would need whiteouts
                raise ImageBuildError(f"installing the operator changed its dependencies' files: {changed[:5]}")
            write_layer(tmp / "operator.tar", venv, OPERATOR_VENV, only=set(now) - set(below))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return tools._cached("operator-layer", key, "operator.tar", build)


def _tree_state(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file and link under root with its size and change time. Folders are left out: adding a
    file changes its folder's time, and a layer may restate a folder."""
    return {p.relative_to(root): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
            if not p.is_dir() or p.is_symlink()}


# --- Harper -------------------------------------------------------------------------------------

def _npm_install_harper(dest: Path) -> None:
    """harperdb from e2e/harper/'s lock into dest/node_modules, with the host's npm.

    Install scripts stay off: they would compile native addons against the host's Node (20), whose
    ABI differs from the image's (Debian's Node 18). What harperdb loads natively (lmdb, msgpackr,
    argon2, bufferutil, utf-8-validate, node-unix-socket) ships prebuilt N-API binaries that load on
    either; the two addons that only build from source (segfault-handler, cbor-extract) are optional
    and Harper runs without them (it requires them in a try block)."""
    if not shutil.which("npm"):
        raise ImageBuildError("`npm` is not on PATH; it is needed to install Harper into its image")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(tools.HARPER_DIR / name, dest / name)
    # `npm install`, not `npm ci`, for the reason tools.ensure_harperdb gives.
    _run(["npm", "install", "--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
         cwd=dest, timeout=1200)
    installed = json.loads((dest / "node_modules/harperdb/package.json").read_text())["version"]
    if installed != tools.harper_version():
        raise ImageBuildError(f"npm installed harperdb {installed}, not the pinned {tools.harper_version()}")
    # Dead weight in a linux/amd64 image: source maps (47 MB; only for stack traces of minified code)
    # and prebuilt addons of other platforms. node-gyp-build picks prebuilds/linux-x64 here.
    for path in list(dest.rglob("*.map")):
        if path.is_file():
            path.unlink()
    for prebuilds in list(dest.rglob("prebuilds")):
        if prebuilds.is_dir():
            for platform in prebuilds.iterdir():
                if platform.is_dir() and platform.name != "linux-x64":
                    shutil.rmtree(platform)


def _harper_app_layer() -> Path:
    key = _digest(tools.HARPER_DIR / "package.json", tools.HARPER_DIR / "package-lock.json", RECIPE_REVISION)

    def build(tmp: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=".harper-work-", dir=tools.cache_dir()))
        try:
            app = work / "harper"
            app.mkdir()
            _log(f"npm install harperdb@{tools.harper_version()}")
            _npm_install_harper(app)
            # /data belongs to the image's user, so the image also runs without a volume there.
            write_layer(tmp / "app.tar", app, HARPER_HOME,
                        extra_dirs={HARPER_DATA: (0o755, NONROOT, NONROOT)})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return tools._cached("harper-app", key, "app.tar", build)


# --- images -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """An image as layers in the cache plus its config; `key` hashes all of it."""
    name: str
    version: str
    layers: tuple[Path, ...]
    entrypoint: tuple[str, ...]
    env: dict[str, str]
    user: str
    workdir: str
    ports: tuple[str, ...]
    labels: dict[str, str]

    def config(self) -> dict:
        return {"entrypoint": list(self.entrypoint), "env": self.env, "user": self.user, "workdir": self.workdir,
                "ports": list(self.ports), "labels": self.labels}

    @property
    def key(self) -> str:
        return _digest(*(layer.parent.name for layer in self.layers), json.dumps(self.config(), sort_keys=True))

    @property
    def tag(self) -> str:
        # Content-addressed: a kubelet with imagePullPolicy IfNotPresent never runs a stale image.
        return f"{self.version}-{self.key[:12]}"


def _labels(title: str, description: str, version: str, licenses: str | None = None) -> dict[str, str]:
    labels = {"org.opencontainers.image.title": title, "org.opencontainers.image.description": description,
              "org.opencontainers.image.version": version}
    if licenses:  # an SPDX expression, so only where there is one
        labels["org.opencontainers.image.licenses"] = licenses
    return labels


def operator_image() -> ImageSpec:
    """The operator image's layers (built the first time): the same contract as operator/Dockerfile."""
    os_layer = debian_os_layer(OPERATOR_PACKAGES)
    deps_layer = _operator_dependencies_layer(os_layer)
    version = operator_version()
    return ImageSpec(
        name="harper-operator", version=version, layers=(os_layer, deps_layer, _operator_layer(os_layer, deps_layer)),
        entrypoint=("harper-operator", "run"),
        # Bytecode was compiled at install time; the chart mounts the root filesystem read-only. HOME=/tmp:
        # kubernetes.aio works out ~ when imported, which fails for a uid without a passwd entry.
        env={"PATH": f"{OPERATOR_VENV}/bin:{BASE_PATH}", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
             "HOME": "/tmp"},
        user=f"{NONROOT}:{NONROOT}", workdir="/", ports=("8080/tcp", "8081/tcp"),
        labels=_labels("harper-operator", "Kubernetes operator for Harper replication clusters", version,
                       "Apache-2.0"))


def harper_image() -> ImageSpec:
    """Harper (harperdb from e2e/harper/'s lock) on Debian's Node, as uid 65532, data under /data.

    The pod sets HARPER_POD_ENV (TC_AGREEMENT=yes, the admin's credentials, REPLICATION_HOSTNAME,
    the ports); ROOTPATH and HOME point into /data, which should be a volume writable by 65532
    (an emptyDir is; a PersistentVolume needs fsGroup: 65532)."""
    version = tools.harper_version()
    return ImageSpec(
        name="harper", version=version, layers=(debian_os_layer(HARPER_PACKAGES), _harper_app_layer()),
        # No sub-command: Harper installs itself into ROOTPATH on the first start, then runs in the
        # foreground (stdin is never read once TC_AGREEMENT and the credentials are set).
        entrypoint=("/usr/bin/node", f"{HARPER_HOME}/node_modules/harperdb/bin/harperdb.js"),
        env={"PATH": f"{HARPER_HOME}/node_modules/.bin:{BASE_PATH}", "ROOTPATH": f"{HARPER_DATA}/harper",
             "HOME": HARPER_DATA,
             # Harper's restart operation would otherwise spawn a detached copy of itself and exit,
             # which ends the container (and the copy with it). Exiting lets the kubelet restart it.
             "HARPER_EXIT_ON_RESTART": "1"},
        user=f"{NONROOT}:{NONROOT}", workdir=HARPER_DATA, ports=HARPER_PORTS,
        # harperdb's own licence is no SPDX identifier ("SEE LICENSE IN LICENSE"): it is in the image at
        # /opt/harper/node_modules/harperdb/LICENSE.
        labels=_labels("harper", f"Harper (harperdb {version}) on Debian {DEBIAN_SUITE}'s Node.js", version))


def image_layout(spec: ImageSpec, registry: Registry) -> Path:
    """The image as an OCI layout folder in the cache, assembled through `registry` the first time."""
    def build(tmp: Path) -> None:
        ref = registry.push_layers(spec.name, spec.tag, list(spec.layers), entrypoint=list(spec.entrypoint),
                                   env=spec.env, workdir=spec.workdir, user=spec.user, labels=spec.labels,
                                   ports=list(spec.ports))
        registry.crane("pull", "--format=oci", ref, tmp / "oci")

    return tools._cached(f"{spec.name}-image", spec.key, "oci", build)


def push_image(spec: ImageSpec, registry: Registry) -> str:
    return registry.push_oci_layout(spec.name, spec.tag, image_layout(spec, registry))


def build_images(registry: Registry) -> dict[str, str]:
    """Build both images (cached) and push them to the running `registry`:
    {"operator": "ADDRESS/harper-operator:TAG", "harper": "ADDRESS/harper:TAG"}."""
    specs = _build_specs()
    return {kind: push_image(spec, registry) for kind, spec in specs.items()}


def _build_specs() -> dict[str, ImageSpec]:
    _require_root("building the images")
    ensure_debian_packages(HOST_PACKAGES)
    # The two images share no layer, so they build side by side (mostly downloads and unpacking).
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {"operator": pool.submit(operator_image), "harper": pool.submit(harper_image)}
    errors = [str(f.exception()) for f in futures.values() if f.exception()]
    if errors:
        raise ImageBuildError("\n\n".join(errors))
    return {kind: f.result() for kind, f in futures.items()}


# --- command line (`make image`) ----------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--push", metavar="ADDRESS",
                        help="push to this running registry (host:port); default: a temporary one, "
                             "checked with crane and stopped at the end")
    args = parser.parse_args(argv)
    started = time.monotonic()
    ensure_crane()
    ensure_registry()
    specs = _build_specs()
    layers_done = time.monotonic() - started
    if args.push:
        host, _, port = args.push.rpartition(":")
        registry = Registry(host, int(port))
        if not registry._answers():
            parser.error(f"no registry answers at http://{args.push}/v2/")
        temporary = False
    else:
        registry = Registry().start()
        temporary = True
    try:
        rows = []
        for kind, spec in specs.items():
            t0 = time.monotonic()
            layout = image_layout(spec, registry)
            ref = registry.push_oci_layout(spec.name, spec.tag, layout)
            pushed = time.monotonic() - t0
            config = registry.config(ref)["config"]
            manifest = registry.manifest(ref)
            # What the registry serves must be what was built, or the images are not usable.
            if config.get("Entrypoint") != list(spec.entrypoint) or config.get("User") != spec.user:
                raise ImageBuildError(f"{ref}: the registry serves entrypoint {config.get('Entrypoint')} "
                                      f"user {config.get('User')}, not {list(spec.entrypoint)} {spec.user}")
            compressed = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
            uncompressed = sum(layer.stat().st_size for layer in spec.layers)
            rows.append((kind, ref, registry.digest(ref), compressed, uncompressed, pushed, config))
        print(f"built in {time.monotonic() - started:.1f}s (layers {layers_done:.1f}s); "
              f"cache: {tools.cache_dir()}")
        for kind, ref, digest, compressed, uncompressed, pushed, config in rows:
            print(f"{kind:9} {ref}")
            print(f"{'':9} digest {digest}")
            print(f"{'':9} size {compressed / 1e6:.1f} MB compressed, {uncompressed / 1e6:.1f} MB unpacked; "
                  f"assembled+pushed in {pushed:.1f}s")
            print(f"{'':9} entrypoint {config.get('Entrypoint')} user {config.get('User')} "
                  f"ports {sorted(config.get('ExposedPorts') or {})}")
        if temporary:
            print(f"(the temporary registry {registry.address} is stopped now; "
                  "use --push ADDRESS to keep the images in a running one)")
    finally:
        if temporary:
            registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
