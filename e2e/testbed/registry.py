"""A local OCI registry and crane, for images the test bed's node pulls (no Docker anywhere).

Both come from github.com/google/go-containerregistry, pinned by e2e/tools/registry/go.mod: crane is
its CLI; the registry is e2e/tools/registry/server, a few lines around its pkg/registry that listen
on exactly the address given. They are built once into the cache like etcd (tools._cached), as static
binaries (CGO_ENABLED=0): no dependency on the host's libc.

The registry keeps manifests and tags in memory and its blobs in a temporary folder removed by
stop(): **nothing survives a restart, so pushing again after each start() is the caller's job.**
It speaks plain HTTP on a loopback address; crane is always called with --insecure for that reason,
and a containerd pulling from it needs the address configured as a plain-HTTP mirror.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from . import proc, tools

MODULE_DIR = tools.TOOLS_DIR / "registry"
MODULE = "github.com/google/go-containerregistry"
PLATFORM = "linux/amd64"


def _version() -> str:
    return tools._required_version(MODULE_DIR / "go.mod", MODULE)


def _go_build_static(package: str, output: Path, ldflags: list[str]) -> None:
    """tools._go_build's flags plus CGO_ENABLED=0 (that helper cannot pass an environment)."""
    if not shutil.which("go"):
        raise tools.ToolBuildError("the `go` toolchain is not on PATH; it is needed to build crane and the registry")
    cmd = ["go", "build", "-trimpath", "-ldflags", " ".join(["-s", "-w", *ldflags]), "-o", str(output), package]
    done = subprocess.run(cmd, cwd=MODULE_DIR, env={**os.environ, "CGO_ENABLED": "0"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise tools.ToolBuildError(f"{' '.join(cmd)} (in {MODULE_DIR}) failed with {done.returncode}:\n"
                                   f"{done.stdout[-8000:]}")


def ensure_crane() -> Path:
    version = _version()
    # Without the stamp `crane version` prints "(devel)": the module is built as a dependency.
    ldflags = [f"-X {MODULE}/cmd/crane/cmd.Version={version}"]
    return tools._cached("crane", version, "crane",
                         lambda tmp: _go_build_static(f"{MODULE}/cmd/crane", tmp / "crane", ldflags))


def ensure_registry() -> Path:
    # The server is this project's own code: its hash is part of the cache name, so an edit rebuilds it.
    h = hashlib.sha256()
    for name in ("server/main.go", "go.mod", "go.sum"):
        h.update((MODULE_DIR / name).read_bytes())
    version = f"{_version()}-{h.hexdigest()[:12]}"
    return tools._cached("registry", version, "registry",
                         lambda tmp: _go_build_static("./server", tmp / "registry", []))


def _csv_flag(values: list[str]) -> str:
    """One value of a pflag StringSlice flag: pflag reads it as a CSV line, so an argument that holds
    a comma or a quote must be quoted, or crane would split it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


class CraneError(RuntimeError):
    """crane failed; the message carries its command line and output."""


class Registry:
    """go-containerregistry's registry on host:port (port None: a free port, chosen now, so the
    address is known before start() and stays the same across restarts).

    Images live in memory (manifests) and in a temp folder (blobs) only while it runs: push them
    again after every start(). Use as a context manager or call stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port if port is not None else proc.free_port(host)
        self.address = f"{host}:{self.port}"
        self._proc = None
        self._dir: Path | None = None
        self.log_path: Path | None = None

    def __repr__(self) -> str:
        return f"Registry({self.address})"

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "Registry":
        """Start the registry (its own process group; it dies with this process, see proc) and wait
        until GET /v2/ answers 200."""
        if self.is_running():
            return self
        binary = ensure_registry()
        ensure_crane()  # every push needs it; build it now rather than in the middle of a test
        if not proc.port_is_free(self.host, self.port):
            raise RuntimeError(f"registry: {self.address} is already in use")
        self._dir = proc.make_temp_dir("registry")
        blobs = self._dir / "blobs"
        blobs.mkdir()
        self.log_path = self._dir / "registry.log"
        self._proc = proc.spawn([binary, "-address", self.address, "-blobs", blobs], log_path=self.log_path)
        try:
            proc.wait_for(f"registry {self.address} /v2/", self._answers, timeout=30, proc=self._proc,
                          log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the process and drop everything pushed to it."""
        proc.stop(self._proc)
        self._proc = None
        if self._dir is not None:
            proc.remove_temp_dir(self._dir)
            self._dir = None

    # --- crane ------------------------------------------------------------------------------

    def ref(self, name: str, tag: str) -> str:
        return f"{self.address}/{name}:{tag}"

    def crane(self, *args: str, timeout: float = 900) -> str:
        """Run crane against this registry (plain HTTP); returns stdout, raises CraneError."""
        cmd = [str(ensure_crane()), "--insecure", *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise CraneError(f"{' '.join(cmd)} failed with {done.returncode}:\n{done.stderr[-4000:]}")
        return done.stdout

    def manifest(self, ref: str) -> dict:
        return json.loads(self.crane("manifest", ref))

    def config(self, ref: str) -> dict:
        return json.loads(self.crane("config", ref))

    def digest(self, ref: str) -> str:
        return self.crane("digest", ref).strip()

    def export(self, ref: str, tar_path: Path) -> Path:
        """The image's flattened filesystem (layers applied, whiteouts honoured) as one tar."""
        self.crane("export", ref, tar_path)
        return tar_path

    # --- pushing ----------------------------------------------------------------------------

    def push_layers(self, name: str, tag: str, layers: list[Path], *, entrypoint: list[str] | None = None,
                    cmd: list[str] | None = None, env: dict[str, str] | None = None, workdir: str | None = None,
                    user: str | None = None, labels: dict[str, str] | None = None,
                    ports: list[str] | None = None) -> str:
        """Push an image made of `layers` (uncompressed tars, bottom first) on an empty OCI base,
        platform linux/amd64, with the given config. ports: e.g. ["8080/tcp"]. Returns ADDRESS/name:tag."""
        if not layers:
            raise ValueError("an image needs at least one layer")
        ref = self.ref(name, tag)
        append = ["append", "--oci-empty-base", "-t", ref]
        for layer in layers:
            if not Path(layer).is_file():
                raise FileNotFoundError(layer)
            append += ["-f", str(layer)]
        self.crane(*append)
        # crane append writes a bare config; mutate sets the rest and pushes the result to the same tag.
        mutate = ["mutate", ref, "-t", ref, "--set-platform", PLATFORM]
        if entrypoint is not None:
            mutate.append(f"--entrypoint={_csv_flag(list(entrypoint))}")
        if cmd is not None:
            mutate.append(f"--cmd={_csv_flag(list(cmd))}")
        for key, value in (env or {}).items():
            mutate += ["--env", f"{key}={value}"]
        if workdir:
            mutate += ["--workdir", workdir]
        if user:
            mutate += ["--user", user]
        for key, value in (labels or {}).items():
            # pflag splits a label holding a second "=" or a comma as CSV; quote those.
            item = f"{key}={value}"
            mutate += ["--label", item if item.count("=") == 1 and '"' not in item else _csv_flag([item])]
        if ports:
            mutate.append(f"--exposed-ports={_csv_flag(list(ports))}")
        self.crane(*mutate)
        return ref

    def push_binary(self, name: str, tag: str, binary: Path, *, path: str = "/app", args: list[str] = ()) -> str:
        """A one-file image: `binary` at `path` (mode 0755, root-owned), entrypoint [path, *args].
        For static programs (a pause binary, CoreDNS): the image has no libc."""
        binary = Path(binary).resolve()  # a symlink would go in as a link, not the program
        with tempfile.TemporaryDirectory(prefix="harper-testbed-layer-") as tmp:
            layer = Path(tmp) / "layer.tar"
            with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
                parts = path.strip("/").split("/")
                for i in range(1, len(parts)):
                    info = tarfile.TarInfo("/".join(parts[:i]))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                info = tar.gettarinfo(binary, arcname="/".join(parts))
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "", ""
                with open(binary, "rb") as f:
                    tar.addfile(info, f)
            return self.push_layers(name, tag, [layer], entrypoint=[path, *args])

    def push_oci_layout(self, name: str, tag: str, layout_dir: Path) -> str:
        """Push the single image of an OCI image layout folder (as written by `crane pull --format=oci`)."""
        ref = self.ref(name, tag)
        self.crane("push", layout_dir, ref)
        return ref
