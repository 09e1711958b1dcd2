"""A kubeconfig whose user is a client-go exec plugin: a few lines of Python that print whatever token is in the
file `token` beside it, and count their runs. How the tests show that a token which changes (an exec plugin's or an
OIDC token that expired) is read again rather than kept from the first login."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

PLUGIN = """\
import json, pathlib, sys
here = pathlib.Path(sys.argv[1])
with open(here / "runs", "a") as f:
    f.write("run\\n")
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": (here / "token").read_text().strip()}}))
"""


class ExecPlugin:
    """`kubeconfig` for `server` (with its CA, base64, when given), its user the plugin in `d`."""

    def __init__(self, d: Path, server: str, ca_data: str | None = None):
        self.dir = d
        (d / "plugin.py").write_text(PLUGIN)
        cluster = {"server": server, **({"certificate-authority-data": ca_data} if ca_data else {})}
        self.kubeconfig = d / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "exec",
            "clusters": [{"name": "bed", "cluster": cluster}],
            "users": [{"name": "exec", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                "args": [str(d / "plugin.py"), str(d)], "interactiveMode": "Never"}}}],
            "contexts": [{"name": "exec", "context": {"cluster": "bed", "user": "exec"}}]}))

    def hand_out(self, token: str) -> None:
        (self.dir / "token").write_text(token)

    @property
    def runs(self) -> int:
        path = self.dir / "runs"
        return len(path.read_text().splitlines()) if path.exists() else 0
