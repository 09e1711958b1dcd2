"""The images and the registry, for real: built without Docker, pushed to a running registry, pulled
back with crane, and run from their exported filesystems the way the chart runs them (uid 65532,
read-only root, only /tmp and a data volume writable)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from .testbed import images, proc
from .testbed.registry import CraneError, Registry, ensure_crane

NONROOT = f"{images.NONROOT}:{images.NONROOT}"


@pytest.fixture(scope="module")
def registry():
    reg = Registry().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def built(request, registry) -> dict[str, str]:
    """Both images built (the first time: minutes; see `make image`) and pushed."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the first build is long; show its progress
        return images.build_images(registry)


@pytest.fixture(scope="module")
def rootfs(registry, built, tmp_path_factory):
    """The image's filesystem as `crane export` gives it (every layer applied), unpacked once."""
    roots: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in roots:
            work = tmp_path_factory.mktemp(kind)
            tar = registry.export(built[kind], work / "image.tar")
            roots[kind] = images.extract_rootfs(tar, work / "root")
            tar.unlink()
        return roots[kind]

    yield get
    for root in roots.values():
        shutil.rmtree(root, ignore_errors=True)


def _env(config: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config.get("Env") or [])


# --- the registry -------------------------------------------------------------------------------

def test_push_layers_sets_exactly_the_config_asked_for(registry, tmp_path):
    layer = tmp_path / "layer.tar"
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "greeting").write_text("hello\n")
    images.write_layer(layer, src, "srv")
    # Commas, quotes and a second "=" survive crane's CSV-parsed flags.
    ref = registry.push_layers(
        "probe", "v1", [layer], entrypoint=["/bin/echo", "a,b", 'say "hi"'], cmd=["--x=1,2"],
        env={"A": "1", "B": "x=y,z"}, workdir="/srv", user="123:456",
        labels={"plain": "yes", "tricky": "k=v, w"}, ports=["8080/tcp"])
    assert ref == f"{registry.address}/probe:v1"
    config = registry.config(ref)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    c = config["config"]
    assert c["Entrypoint"] == ["/bin/echo", "a,b", 'say "hi"']
    assert c["Cmd"] == ["--x=1,2"]
    assert _env(c) == {"A": "1", "B": "x=y,z"}
    assert (c["WorkingDir"], c["User"]) == ("/srv", "123:456")
    assert c["Labels"] == {"plain": "yes", "tricky": "k=v, w"}
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    manifest = registry.manifest(ref)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    exported = registry.export(ref, tmp_path / "export.tar")
    out = subprocess.run(["tar", "-xOf", exported, "srv/etc/greeting"], capture_output=True, text=True)
    assert out.stdout == "hello\n"


def test_push_binary_runs_as_a_one_file_image(registry, tmp_path):
    # crane is built static (CGO_ENABLED=0), so it runs in an image that holds nothing else.
    ref = registry.push_binary("crane-only", "v1", ensure_crane(), path="/bin/crane", args=["version"])
    config = registry.config(ref)["config"]
    assert config["Entrypoint"] == ["/bin/crane", "version"]
    root = images.extract_rootfs(registry.export(ref, tmp_path / "x.tar"), tmp_path / "root")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["bin", "bin/crane"]
    # /usr/bin/env is not in this image: run it directly in a chroot of its filesystem.
    done = subprocess.run(["chroot", "--userspec", NONROOT, root, *config["Entrypoint"]],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == images.tools._required_version(
        images.tools.TOOLS_DIR / "registry" / "go.mod", "github.com/google/go-containerregistry")


def test_registry_forgets_everything_on_restart(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    images.write_layer(tmp_path / "l.tar", src, "x")
    reg = Registry()
    try:
        ref = reg.start().push_layers("gone", "v1", [tmp_path / "l.tar"])
        assert reg.digest(ref).startswith("sha256:")
        address = reg.address
        reg.stop()
        assert not reg._answers()
        reg.start()
        assert reg.address == address  # the address stays, so a node's mirror config stays valid
        with pytest.raises(CraneError):
            reg.manifest(ref)
    finally:
        reg.stop()


# --- both images --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["operator", "harper"])
def test_image_is_well_formed_oci(registry, built, kind):
    """Every layer's digest and diff_id checked by crane against the bytes the registry serves."""
    out = registry.crane("validate", "--remote", built[kind])
    assert "PASS" in out, out
    manifest = registry.manifest(built[kind])
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # The Debian OS, then the application; the operator's in two: its dependencies, then its own files.
    layers = {"operator": 3, "harper": 2}[kind]
    assert len(manifest["layers"]) == layers
    config = registry.config(built[kind])
    assert len(config["rootfs"]["diff_ids"]) == layers


# --- the operator image -------------------------------------------------------------------------

def test_operator_image_config_matches_the_dockerfile_contract(registry, built):
    config = registry.config(built["operator"])
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    c = config["config"]
    assert c["Entrypoint"] == ["harper-operator", "run"]
    assert not c.get("Cmd")
    assert c["User"] == NONROOT
    assert set(c["ExposedPorts"]) == {"8080/tcp", "8081/tcp"}
    env = _env(c)
    assert env["PATH"].startswith("/opt/harper-operator/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/tmp"  # kubernetes.aio needs a home to import under a uid without a passwd entry
    assert c["Labels"]["org.opencontainers.image.version"] == images.operator_version()
    # Dockerfile contract: `docker build` would print the same entrypoint; check the file says so.
    dockerfile = (images.REPO_DIR / "operator" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["harper-operator", "run"]' in dockerfile and "USER 65532:65532" in dockerfile


def test_operator_image_filesystem(rootfs):
    root = rootfs("operator")
    venv = root / "opt/harper-operator"
    assert (venv / "bin/harper-operator").is_file()
    assert os.readlink(venv / "bin/python3").endswith("python3")
    assert "home = /usr/bin" in (venv / "pyvenv.cfg").read_text()
    site = venv / "lib/python3.11/site-packages"
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"harper_operator", "kopf", "kubernetes", "pydantic"} <= installed
    assert not {"pip", "setuptools", "pytest", "hypothesis"} & installed  # no installer, no test extras
    # Non-editable: the package itself sits in the venv, not a link back to a working tree.
    assert (site / "harper_operator" / "cli.py").is_file()
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    # Every dependency at the version constraints.txt pins.
    pins = dict(line.split("==") for line in (images.REPO_DIR / "constraints.txt").read_text().split()
                if "==" in line)
    for dist in site.glob("*.dist-info"):
        name, version = dist.name[:-len(".dist-info")].rsplit("-", 1)
        pinned = {k.lower().replace("-", "_"): v for k, v in pins.items()}.get(name.lower().replace("-", "_"))
        if pinned:
            assert version == pinned, f"{name} {version} is not the pinned {pinned}"
    assert not (root / "usr/share/doc/python3/changelog.Debian.gz").exists()  # docs left out
    assert not (root / "etc/resolv.conf").exists()  # nothing of the build machine's network


def test_operator_image_runs_read_only_as_nonroot(rootfs, registry, built):
    root = rootfs("operator")
    env = _env(registry.config(built["operator"])["config"])
    helped = images.run_in_rootfs(root, ["harper-operator", "--help"], env=env, user=NONROOT, read_only=True,
                                  check=False)
    assert helped.returncode == 0 and "run the operator" in helped.stdout, helped.stdout
    # `crds` imports the whole package (models, pydantic) and prints YAML: more than --help touches.
    printed = images.run_in_rootfs(root, ["harper-operator", "crds"], env=env, user=NONROOT, read_only=True,
                                   check=False)
    assert printed.returncode == 0, printed.stdout
    crds = list(yaml.safe_load_all(printed.stdout))
    assert {c["spec"]["names"]["plural"] for c in crds if c} >= {"harperclusters", "harpernodes"}
    whoami = images.run_in_rootfs(root, ["python3", "-c", "import os; print(os.getuid(), os.getgid())"],
                                  env=env, user=NONROOT, read_only=True).stdout.split()
    assert whoami == ["65532", "65532"]


def test_operator_image_serves_against_the_real_control_plane(rootfs, registry, built, control_plane, kubectl,
                                                              tmp_path):
    """`harper-operator run` from the image, with the chart's restrictions, against kube-apiserver:
    it must come up and answer /healthz and /metrics without writing outside /tmp."""
    root = rootfs("operator")
    kubectl("apply", "-f", str(images.REPO_DIR / "crds"))  # what e2e/scenarios' crds fixture does
    kubectl("wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")
    namespace = f"img-{os.getpid()}-{int(time.time())}"
    kubectl("create", "namespace", namespace)  # watched alone, so it never touches other tests' clusters
    kube = tmp_path / "kube"
    kube.mkdir()
    shutil.copy(control_plane.kubeconfig, kube / "kubeconfig")
    os.chmod(kube / "kubeconfig", 0o644)
    port = proc.free_port()
    env = {**_env(registry.config(built["operator"])["config"]), "POD_ID": "image-test"}
    entrypoint = registry.config(built["operator"])["config"]["Entrypoint"]
    cmd = images.rootfs_command(
        root, [*entrypoint, "--kubeconfig", "/kube/kubeconfig", f"--metrics-port={port}", f"--namespace={namespace}",
               "--log-format=plain"],
        env=env, user=NONROOT, read_only=True, network=True, binds={"/kube": kube})
    log = tmp_path / "operator.log"
    child = proc.spawn(cmd, log_path=log)
    try:
        def answers(path: str) -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port + (1 if path == '/healthz' else 0)}{path}",
                                            timeout=2) as resp:
                    return resp.read() if resp.status == 200 else None
            except OSError:
                return None

        proc.wait_for("operator /healthz from the image", lambda: answers("/healthz"), timeout=90,
                      proc=child, log_path=log)
        metrics = answers("/metrics")
        assert metrics and b"# TYPE" in metrics
        assert child.poll() is None
    finally:
        proc.stop(child)
    text = log.read_text(errors="replace")
    assert "Read-only file system" not in text and "Permission denied" not in text, text[-3000:]


# --- the Harper image ---------------------------------------------------------------------------

def test_harper_image_config(registry, built):
    c = registry.config(built["harper"])["config"]
    assert c["Entrypoint"] == ["/usr/bin/node", "/opt/harper/node_modules/harperdb/bin/harperdb.js"]
    assert c["User"] == NONROOT
    env = _env(c)
    assert env["ROOTPATH"] == "/data/harper" and env["HOME"] == "/data"
    # Accepting Harper's terms and choosing credentials are the pod's business, not the image's.
    assert "TC_AGREEMENT" in images.HARPER_POD_ENV and not set(images.HARPER_POD_ENV) & set(env)
    assert {"9925/tcp", "9926/tcp", "9933/tcp"} <= set(c["ExposedPorts"])


def test_harper_image_filesystem(rootfs):
    root = rootfs("harper")
    harper = root / "opt/harper/node_modules/harperdb"
    assert (harper / "bin/harperdb.js").is_file()
    assert json.loads((harper / "package.json").read_text())["version"] == images.tools.harper_version()
    assert os.readlink(root / "opt/harper/node_modules/.bin/harperdb") == "../harperdb/bin/harperdb.js"
    data = (root / "data").stat()
    assert (data.st_uid, data.st_gid) == (images.NONROOT, images.NONROOT)
    assert next((root / "opt/harper/node_modules").rglob("*.map"), None) is None  # trimmed
    assert not (root / "usr/bin/python3").exists()  # Node's image carries no Python


def test_harper_image_runs_harper_as_nonroot_on_a_read_only_root(rootfs, registry, built, tmp_path):
    """Node from Debian runs the pinned harperdb: it installs into /data on first start and
    answers /health and cluster_status, as uid 65532, with the root filesystem read-only and a
    network namespace of its own (loopback only)."""
    root = rootfs("harper")
    config = registry.config(built["harper"])["config"]
    env = _env(config)
    version = images.run_in_rootfs(root, ["node", "--version"], env=env, user=NONROOT, read_only=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    assert major >= 16, version  # harperdb's minimum-node
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, images.NONROOT, images.NONROOT)  # what an emptyDir or fsGroup gives the pod
    pod_env = {**env, "TC_AGREEMENT": "yes", "HDB_ADMIN_USERNAME": "admin", "HDB_ADMIN_PASSWORD": "s3cret-pw",
               "THREADS_COUNT": "1", "REPLICATION_HOSTNAME": "harper-0",
               "OPERATIONSAPI_NETWORK_PORT": "127.0.0.1:9925"}
    # Harper starts in the background; node (the image's own) polls it from inside the namespace.
    probe = r"""
"$@" > /tmp/harper.log 2>&1 &
ops() { node -e '
  const [body, auth] = [process.argv[1], "Basic " + Buffer.from("admin:s3cret-pw").toString("base64")];
  const init = body ? {method: "POST", body, headers: {"content-type": "application/json", authorization: auth}} : {};
  fetch("http://127.0.0.1:9925/" + (body ? "" : "health"), init)
    .then(r => r.text().then(t => { console.log(r.status, t); process.exit(r.status == 200 ? 0 : 1); }))
    .catch(() => process.exit(1));' "$1"; }
i=0
until ops "" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 180 ] || { cat /tmp/harper.log; exit 3; }; sleep 0.5; done
ops '{"operation":"cluster_status"}'
"""
    done = images.run_in_rootfs(root, ["/bin/sh", "-c", probe, "sh", *config["Entrypoint"]], env=pod_env,
                                user=NONROOT, workdir=config["WorkingDir"], read_only=True,
                                binds={"/data": data}, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    status, body = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "200" and json.loads(body)["node_name"] == "harper-0"
    assert (data / "harper" / "harperdb-config.yaml").is_file()
    assert {p.stat().st_uid for p in (data / "harper").iterdir()} == {images.NONROOT}


# --- caching ------------------------------------------------------------------------------------

def test_a_changed_operator_source_changes_its_layer_and_only_a_changed_pin_its_dependencies(tmp_path):
    for name in images.OPERATOR_SOURCES:
        source = images.REPO_DIR / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, tmp_path / name)
    before, deps = images.operator_inputs_key("deps", tmp_path), images.operator_dependencies_key("os", tmp_path)
    assert images.operator_inputs_key("deps", tmp_path) == before
    (tmp_path / "operator/harper_operator/__pycache__").mkdir(exist_ok=True)
    (tmp_path / "operator/harper_operator/__pycache__/x.pyc").write_bytes(b"junk")
    assert images.operator_inputs_key("deps", tmp_path) == before  # bytecode is no input
    (tmp_path / "operator/harper_operator/cli.py").write_text(
        (tmp_path / "operator/harper_operator/cli.py").read_text() + "\n# edited\n")
    assert images.operator_inputs_key("deps", tmp_path) != before
    assert images.operator_dependencies_key("os", tmp_path) == deps  # a code change keeps the slow layer
    assert images.operator_inputs_key("other-deps", tmp_path) != images.operator_inputs_key("deps", tmp_path)
    assert images.operator_dependencies_key("other-os", tmp_path) != deps
    pins = tmp_path / "constraints.txt"
    pins.write_text(pins.read_text().replace("aiohttp==", "aiohttp==0.0.0\n# was "))
    assert images.operator_dependencies_key("os", tmp_path) != deps


def test_second_build_reuses_the_cache(registry, built):
    started = time.monotonic()
    again = images.build_images(registry)
    assert again == built  # same content, same tags
    assert time.monotonic() - started < 60
