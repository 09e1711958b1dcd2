"""Harper's clustering operations answered from the MODEL: a JSON body in, (HTTP status, JSON answer) out.

Part of the scale-benchmark SIMULATOR, not Harper. The answers copy the shapes of real harperdb 4.7.29 answers
(tests/harper/recorded/) so the operator's real client reads them as it reads Harper; the state behind them is
harper_model.HarperModel. Where Harper's wording is unknown, the text is marked "guessed". No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from harper_operator.reconcile.topology import DesiredNode, Route, Subscription

from .harper_model import HarperModel, ModelError, ModelNode

Answer = tuple[int, Any]

RESTARTING = "Restarting HarperDB. This may take up to 60 seconds."
CONFIG_SET = "Configuration successfully set. You must restart HarperDB for new config settings to take effect."


class BadRequest(Exception):
    """A request Harper would refuse with 400 before doing anything."""


@dataclass
class Call:
    """One operation on one simulated node: its group's model, its name, the body, the fleet's credentials."""

    model: HarperModel
    name: str
    body: dict[str, Any]
    credentials: tuple[str, str]

    @property
    def node(self) -> ModelNode:
        return self.model.nodes[self.name]


# --- reading requests -------------------------------------------------------------------------------------------

def _subscriptions(value: Any) -> tuple[Subscription, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest("'subscriptions' must be an array")
    subs = []
    for item in value:
        database = item.get("database", item.get("schema")) if isinstance(item, dict) else None
        if not isinstance(database, str) or not database:
            raise BadRequest("each subscription needs a 'database'")  # guessed wording
        table = item.get("table")
        subs.append(Subscription(database, table if isinstance(table, str) else None,
                                 bool(item.get("subscribe")), bool(item.get("publish"))))
    return tuple(subs)


def node_target(body: dict[str, Any], caller_url: str) -> DesiredNode:
    """The peer an add_node/update_node body names, as the model's DesiredNode."""
    hostname, url = body.get("hostname"), body.get("url")
    if hostname is not None and not isinstance(hostname, str):
        raise BadRequest("'hostname' must be a string")
    if url is not None and not isinstance(url, str):
        raise BadRequest("'url' must be a string")  # guessed wording
    if not hostname and not url:
        raise BadRequest("'hostname' or 'url' is required")  # guessed wording
    if not url:  # Harper builds it from the CALLER's own replication scheme and port
        caller = urlsplit(caller_url)
        url = f"{caller.scheme}://{hostname}:{caller.port}"
    shard = body.get("shard")
    if "shard" in body and (isinstance(shard, bool) or not isinstance(shard, int) or shard < 0):
        raise BadRequest("'shard' must be a number")
    revoked = body.get("revoked_certificates") or []
    if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
        raise BadRequest("'revoked_certificates' must be an array of strings")  # guessed wording
    return DesiredNode(name=hostname or urlsplit(url).hostname or "", url=url, shard=shard,
                       subscriptions=_subscriptions(body.get("subscriptions")), revoked_certificates=tuple(revoked))


def routes_from(entries: Any, default_port: int) -> list[Route]:
    """Routes in any of Harper's spellings (wss://h:p, h:p, h, {hostname|host, port}); unreadable ones dropped."""
    if not isinstance(entries, list):
        raise BadRequest("'routes' must be an array")  # guessed wording
    routes = []
    for entry in entries:
        try:
            if isinstance(entry, str):
                parts = urlsplit(entry if "://" in entry else "//" + entry)
                host, port = parts.hostname, parts.port
            elif isinstance(entry, dict):
                host, port = entry.get("hostname") or entry.get("host"), entry.get("port")
            else:
                continue
            if isinstance(host, str) and host:
                routes.append(Route(host, int(port or default_port)))
        except (ValueError, TypeError):
            continue
    return routes


def credentials_match(value: Any, credentials: tuple[str, str]) -> bool:
    """An `authorization` of add_node ({username, password} or a Basic header) against the fleet's super_user."""
    if isinstance(value, dict):
        given = (value.get("username"), value.get("password"))
    elif isinstance(value, str) and value.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(value[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        given = (user, password)
    else:
        return False
    return all(isinstance(g, str) and hmac.compare_digest(g.encode(), w.encode()) for g, w in zip(given, credentials))


# --- answers ----------------------------------------------------------------------------------------------------

def model_error(error: ModelError) -> Answer:
    """The status and body Harper gives for what the model refuses (the client classifies them from these)."""
    text = str(error)
    if text.startswith("Error returned from "):  # the peer does not answer: 5xx naming the peer, as Harper does
        url = text[len("Error returned from "):].split(": ", 1)[0]
        parts = urlsplit(url)
        return 500, {"error": f"Error returned from {url}: connect ECONNREFUSED {parts.hostname}:{parts.port}"}
    if text.endswith(" does not answer"):
        return 503, {"error": text}
    return 400, {"error": text}  # "<name> does not exist", and refusals the model invents


def _socket(database: str, peer: str, connected: bool) -> dict[str, Any]:
    return {"database": database, "connected": connected, "threadId": 1, "nodes": [peer],
            "backPressurePercent": 0, "lastReceivedStatus": "Waiting"}


def cluster_status(call: Call) -> Answer:
    seen = call.model.observe_node(call.name)
    connections = []
    for peer in seen.peers.values():
        entry: dict[str, Any] = {"name": peer.name, "url": peer.url}
        if peer.replicates:
            entry.update(subscriptions=None, replicates=True)
            databases = ["system", "data"]
        else:
            entry["subscriptions"] = [{"database": s.database, "table": s.table, "subscribe": s.subscribe,
                                       "publish": s.publish} for s in peer.subscriptions or ()]
            databases = sorted({s.database for s in peer.subscriptions or ()}) or ["data"]
        if peer.shard is not None:
            entry["shard"] = peer.shard
        if peer.revoked_certificates:
            entry["revoked_certificates"] = list(peer.revoked_certificates)
        entry["database_sockets"] = [_socket(d, peer.name, peer.connected) for d in databases]
        connections.append(entry)
    answer: dict[str, Any] = {"type": "cluster-status", "connections": connections, "node_name": call.name}
    own = call.model.rec(call.name, call.name)
    if own is not None:  # Harper reports its url once its own record exists, its shard only when truthy
        answer["url"] = own.url
    if seen.shard:
        answer["shard"] = seen.shard
    answer["is_enabled"] = True
    return 200, answer


def _peer_refuses(call: Call, body: dict[str, Any], target: DesiredNode) -> str | None:
    """Harper's answer when the peer refuses the given credentials on a first join (its 1008), else None."""
    if "authorization" not in body or credentials_match(body["authorization"], call.credentials):
        return None
    peer = next((n for n in call.model.nodes.values() if n.url == target.url), None)
    if peer is None or call.model.rec(peer.name, call.name) is not None:
        return None  # unreachable anyway, or already joined: Harper does not ask again
    return (f"Error returned from {target.url}: Connection closed Unauthorized 1008 and connection was required to "
            "sign certificate")


def _set_node(call: Call, body: dict[str, Any], done: str) -> Answer:
    target = node_target(body, call.node.url)
    refused = _peer_refuses(call, body, target)
    if refused:
        return 500, {"error": refused}
    try:
        call.model.set_node(call.name, target)
    except ModelError as e:
        return model_error(e)
    return 200, {"message": done.format(url=target.url)}


def add_node(call: Call) -> Answer:
    return _set_node(call, call.body, "Successfully added '{url}' to cluster")


def update_node(call: Call) -> Answer:
    return _set_node(call, call.body, "Successfully updated '{url}'")


def remove_node(call: Call) -> Answer:
    hostname = call.body.get("hostname")
    if not isinstance(hostname, str) or not hostname:
        raise BadRequest("'hostname' is required")  # guessed wording
    try:
        call.model.remove_node(call.name, hostname)
    except ModelError as e:
        return model_error(e)
    return 200, {"message": f"Successfully removed '{hostname}' from cluster"}


def configure_cluster(call: Call) -> Answer:
    """add_node for each connection; failures listed by node_name, as 4.7.29 does."""
    connections = call.body.get("connections")
    if not isinstance(connections, list):
        raise BadRequest("'connections' must be an array")
    done, failed = [], []
    for entry in connections:
        name = entry.get("node_name") if isinstance(entry, dict) else None
        try:
            status, answer = _set_node(call, entry if isinstance(entry, dict) else {}, "Successfully added '{url}' "
                                                                                      "to cluster")
        except BadRequest:
            status, answer = 400, None
        if status == 200:
            done.append({"node_name": name, "response": answer["message"]} if name else
                        {"response": answer["message"]})
        else:
            failed.append(name)
    if connections and not done:
        return 500, {"error": "Failed to configure the cluster. Check the logs for more details."}
    if failed:
        return 200, {"message": "Configure cluster was partially successful. Errors occurred when attempting to "
                                "configure the following nodes. Check the logs for more details.",
                     "failed_nodes": failed, "connections": done}
    return 200, {"message": "Configure cluster complete.", "connections": done}


def _port(call: Call) -> int:
    return urlsplit(call.node.url).port or 9933


def get_configuration(call: Call) -> Answer:
    """Only what the client reads: replication (routes = the file's list, as written)."""
    node = call.node
    replication: dict[str, Any] = {"hostname": call.name, "url": node.url, "port": f"{call.name}:{_port(call)}",
                                   "databases": "*"}
    if node.routes_disk is not None:
        replication["routes"] = [r.url for r in node.routes_disk]
    return 200, {"replication": replication}


def set_configuration(call: Call) -> Answer:
    """Writes the file: replication_routes replaces replication.routes (read at the next restart)."""
    if "replication_routes" in call.body:
        call.node.routes_disk = routes_from(call.body["replication_routes"], _port(call))
    return 200, {"message": CONFIG_SET}


def cluster_get_routes(call: Call) -> Answer:
    """The routes loaded at start-up (Harper's own cluster_get_routes)."""
    return 200, [{"hostname": r.hostname, "port": r.port} for r in call.node.routes_loaded or []]


def _requested_routes(call: Call) -> list[Route]:
    if "routes" not in call.body:
        raise BadRequest("'routes' is required")
    return routes_from(call.body["routes"], _port(call))


def cluster_set_routes(call: Call) -> Answer:
    routes = _requested_routes(call)
    loaded = list(call.node.routes_loaded or [])
    added = [r for i, r in enumerate(routes) if r not in loaded and r not in routes[:i]]
    call.model.set_routes(call.name, routes)
    return 200, {"message": "cluster routes successfully set", "set": [r.url for r in added],
                 "skipped": [r.url for r in routes if r not in added]}


def cluster_delete_routes(call: Call) -> Answer:
    routes = _requested_routes(call)
    loaded = call.node.routes_loaded or []
    call.model.delete_routes(call.name, routes)
    return 200, {"message": "cluster routes successfully deleted", "deleted": [r.url for r in routes if r in loaded],
                 "skipped": [r.url for r in routes if r not in loaded]}


def restart(call: Call) -> Answer:
    """The model restarts at once (no down time): routes loaded, own record reset, sockets reconnected."""
    call.model.restart(call.name)
    return 200, {"message": RESTARTING}


def list_certificates(call: Call) -> Answer:
    return 200, []  # the model has no certificates: a node without records reads as new, never as wiped


OPERATIONS: dict[str, Callable[[Call], Answer]] = {
    "cluster_status": cluster_status,
    "add_node": add_node,
    "set_node": add_node,  # documented alias (4.7.29 itself answers "not found"; the client never sends it)
    "update_node": update_node,
    "remove_node": remove_node,
    "configure_cluster": configure_cluster,
    "get_configuration": get_configuration,
    "set_configuration": set_configuration,
    "cluster_get_routes": cluster_get_routes,
    "cluster_set_routes": cluster_set_routes,
    "cluster_delete_routes": cluster_delete_routes,
    "restart": restart,
    "list_certificates": list_certificates,
}


def answer(call: Call) -> Answer:
    """Run one operation; unknown operations and unreadable requests get Harper's 400."""
    operation = call.body.get("operation")
    handler = OPERATIONS.get(operation) if isinstance(operation, str) else None
    if handler is None:
        return 400, {"error": f"Operation '{operation}' not found"}
    if not call.node.up:
        return 503, {"error": f"{call.name} is stopped"}  # only if someone stopped it in the model
    try:
        return handler(call)
    except BadRequest as e:
        return 400, {"error": str(e)}
