"""`status` and `plan` (of `harper-operator` and of `kubectl harper`): read-only views of a HarperCluster.

Where the answers come from:

* `status` by default: the resources' `.status`, as the operator last wrote it. No Harper call, no Secret read:
  it works wherever `kubectl get harperclusters` works.
* through the API server (`status --live`; `plan` by default): Harper's operations API is called through the
  API server's proxy subresource of the Service or pod that `operationsUrl` names, with the user's own
  credentials, so the user's RBAC decides (`create` on `services/proxy` or `pods/proxy`, `get` on the Secret).
  A host that is not a cluster Service or pod name (an IP, an external name, loopback) is refused and never
  contacted from here: Harper's credentials travel only through the API server.
* `--direct`, and only when asked for: every `operationsUrl` is called from this machine, as the operator does
  (in-cluster, or where the names resolve, such as the loopback test bed).

The modules, from the pure ones to the commands:

* errors: exit codes and CliError.
* render: documents (-o json|yaml), tables and plan lines from what was read. Pure.
* routing: which way each operationsUrl is reached (from here, or which API server proxy path). Pure.
* kubeapi: the user's kubeconfig and the Kubernetes reads (clusters, nodes, Secrets).
* proxy: ProxiedHarperClient, the transport through the API server (Harper's login and session cookie).
* transports: RoutedPool (the direct client or the proxied one, per member) and `look`.
* certificates: the rows of `certificates`, from a provisioned cluster's Secret NAME-tls. Pure.
* commands: Options, status, plan, certificates.
"""

from .commands import Options, certificates, plan, status
from .errors import FAILED, NOT_FOUND, NOT_READY, OK, CliError, NotFound
from .routing import DIRECT, LIVE, Refused, proxy_path, route

__all__ = ["DIRECT", "FAILED", "LIVE", "NOT_FOUND", "NOT_READY", "OK", "CliError", "NotFound", "Options",
           "Refused", "certificates", "plan", "proxy_path", "route", "status"]
