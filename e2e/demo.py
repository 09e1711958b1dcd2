"""`make demo`: the test bed, the operator, examples/cluster.yaml, a status table; Ctrl-C cleans up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .operator_process import ROOT, OperatorProcess
from .scenarios.kit import condition, secret
from .testbed import proc
from .testbed.sandbox import start_testbed


def _kubectl(kubectl: str, kubeconfig: str, *args: str, input: str | None = None) -> str:
    return subprocess.run([kubectl, "--kubeconfig", kubeconfig, *args], input=input, check=True,
                          capture_output=True, text=True).stdout


def _example(nodes) -> str:
    """examples/cluster.yaml, pointed at the nodes this test bed got (another test bed may hold .11-.13)."""
    text = (ROOT / "examples" / "cluster.yaml").read_text()
    for i, node in enumerate(nodes, start=11):
        text = text.replace(f"127.0.0.{i}:", f"@{node.name}:").replace(f"hostname: 127.0.0.{i}", f"hostname: @{node.name}")
    return text.replace("@", "")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    proc.interruptible()
    with start_testbed(nodes=3) as bed, tempfile.TemporaryDirectory(prefix="harper-demo-") as tmp:
        kubeconfig, kubectl = bed.control_plane.kubeconfig, bed.tools.kubectl
        first = bed.fleet.nodes[0]
        print(f"test bed up: export KUBECONFIG={kubeconfig}", flush=True)
        _kubectl(kubectl, kubeconfig, "apply", "-f", str(ROOT / "crds"))
        _kubectl(kubectl, kubeconfig, "wait", "--for", "condition=Established", "crd", "--all", "--timeout=60s")
        operator = OperatorProcess(kubeconfig, Path(tmp) / "operator.log").start()
        try:
            _kubectl(kubectl, kubeconfig, "apply", "-f", "-",
                     input=json.dumps(secret("harper-admin", first.username, first.password)))
            print(_kubectl(kubectl, kubeconfig, "apply", "-f", "-", input=_example(bed.fleet.nodes)), flush=True)
            started = time.monotonic()
            while True:
                hc = json.loads(_kubectl(kubectl, kubeconfig, "get", "hc", "demo", "-o", "json"))
                if condition(hc, "Ready").get("status") == "True":
                    break
                if time.monotonic() - started > 300:
                    print(operator.log_tail(), file=sys.stderr)
                    raise SystemExit("the demo cluster did not become Ready in 300 s")
                time.sleep(1)
            print(f"HarperCluster demo Ready after {time.monotonic() - started:.1f} s\n", flush=True)
            print(_kubectl(kubectl, kubeconfig, "get", "hc,hn", "-o", "wide"))
            subprocess.run([str(Path(sys.executable).with_name("harper-operator")), "status", "demo",
                            "--kubeconfig", kubeconfig], check=False)
            print(f"\noperator log: {operator.log_path}\nexport KUBECONFIG={kubeconfig}\n"
                  "Running until Ctrl-C (try: kubectl get hc,hn -w; harper-operator plan demo)", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\ncleaning up...", flush=True)
        finally:
            operator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
