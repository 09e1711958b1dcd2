"""Typed requests to and answers from Harper's operations API.

This is the only module that knows Harper's wire names (threadId, lastReceivedLocalTime,
backPressurePercent, ...). Everything else in the operator uses the snake_case attributes.

Answers are parsed tolerantly (unknown fields kept, absent fields allowed, the 4.4-4.7 spellings
accepted) because a status that fails to parse is worse than one with a missing number. Requests
are strict: a request that Harper would misread is refused here, before it reaches a node.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

REPLICATION_SUBPROTOCOL = "harperdb-replication-v1"
DEFAULT_REPLICATION_PORT = 9933

# Harper's way of saying a 200 did not fully work ("... but there was an error updating target node").
FALSE_SUCCESS_MARKER = "but there was an error"

# A socket paused by back-pressure at least this share of the time is not keeping up.
STALLED_BACK_PRESSURE_PERCENT = 50.0


# --------------------------------------------------------------------------- time parsing

def parse_harper_time(value: Any) -> datetime | None:
    """Harper reports times as RFC 1123 strings (`Wed, 25 Nov 2026 18:34:24 GMT`, 1 s resolution),
    ISO 8601 strings, or epoch milliseconds; 0/1/"Copying" mean "no time" (1 = a full copy is
    running). Anything unreadable becomes None rather than failing the whole answer."""
    if value is None or value == "" or value == "Copying":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value <= 1:
            return None
        try:
            return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is None:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
        if parsed is None:
            try:  # certificate style: "Nov 22 18:33:18 2036 GMT"
                parsed = datetime.strptime(text, "%b %d %H:%M:%S %Y %Z")
            except ValueError:
                return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, which Harper's `new Date(...)` reads unambiguously."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- requests

class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Authorization(_Request):
    """Credentials a node uses to reach its peer during add_node (the peer signs our certificate
    only for a super_user). The password is a SecretStr so it never shows in repr or logs."""

    username: str = Field(min_length=1)
    password: SecretStr

    def to_wire(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password.get_secret_value()}


class Subscription(BaseModel):
    """One database (or table) a node sends to / receives from a peer.

    `subscribe`: receive the peer's changes; `publish`: send ours. Older records spell the
    database `schema`, which is accepted on input. Unknown keys are refused, so a misspelt
    `table` cannot silently widen a subscription to the whole database.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _FIELDS: ClassVar[tuple[str, ...]] = ("database", "schema", "table", "subscribe", "publish")

    database: str = Field(min_length=1, validation_alias=AliasChoices("database", "schema"))
    table: str | None = None
    subscribe: StrictBool
    publish: StrictBool

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"database": self.database, "subscribe": self.subscribe, "publish": self.publish}
        if self.table is not None:
            wire["table"] = self.table
        return wire


def _check_replication_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"replication url must look like wss://host:port, got {url!r}")
    try:
        parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in replication url {url!r}") from exc
    return url


def node_name_from_url(url: str) -> str:
    """The name Harper gives a node known only by URL: the URL's host (urlToNodeName); "" when there is none, or
    when urllib cannot read the URL (an echoed `https://[1.2.3.4]` made this property raise ValueError)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


class NodeRequest(_Request):
    """The body of add_node / update_node (and each configure_cluster connection).

    Pass `url` whenever ports differ between nodes: with only `hostname`, Harper builds the URL
    from the CALLING node's own replication port. `authorization` is either username/password or
    a complete HTTP Authorization header value (kept as a secret either way).
    """

    hostname: str | None = Field(default=None, min_length=1)
    url: str | None = None
    verify_tls: StrictBool = True
    authorization: Authorization | SecretStr | None = None
    retain_authorization: StrictBool | None = None
    revoked_certificates: list[str] | None = None
    shard: StrictInt | None = Field(default=None, ge=0)
    start_time: datetime | None = None
    subscriptions: list[Subscription] | None = None

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        return None if value is None else _check_replication_url(value)

    @field_validator("authorization", mode="before")
    @classmethod
    def _header_or_credentials(cls, value: Any) -> Any:
        # A plain string is a ready-made header ("Basic ...", "Bearer ..."): keep it secret.
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("authorization header must not be empty")
            return SecretStr(value)
        return value

    @model_validator(mode="after")
    def _needs_a_target(self) -> "NodeRequest":
        if not self.hostname and not self.url:
            raise ValueError("a node request needs a url (preferred) or a hostname")
        return self

    @property
    def node_name(self) -> str:
        """The name Harper will file this node under (hostname, else the URL's host)."""
        return self.hostname or node_name_from_url(self.url or "")

    def to_wire(self, operation: str) -> dict[str, Any]:
        body: dict[str, Any] = {"operation": operation}
        if self.hostname is not None:
            body["hostname"] = self.hostname
        if self.url is not None:
            body["url"] = self.url
        body["verify_tls"] = self.verify_tls
        if isinstance(self.authorization, Authorization):
            body["authorization"] = self.authorization.to_wire()
        elif isinstance(self.authorization, SecretStr):
            body["authorization"] = self.authorization.get_secret_value()
        if self.retain_authorization is not None:
            body["retain_authorization"] = self.retain_authorization
        if self.revoked_certificates is not None:
            body["revoked_certificates"] = list(self.revoked_certificates)
        if self.shard is not None:
            body["shard"] = self.shard
        if self.start_time is not None:
            body["start_time"] = _iso_utc(self.start_time)
        if self.subscriptions is not None:
            body["subscriptions"] = [s.to_wire() for s in self.subscriptions]
        return body

    def secrets(self) -> list[str]:
        """Every secret this request carries, so the client can redact them from errors."""
        if isinstance(self.authorization, Authorization):
            user = self.authorization.username
            pw = self.authorization.password.get_secret_value()
            basic = base64.b64encode(f"{user}:{pw}".encode()).decode()
            return [pw, basic]
        if isinstance(self.authorization, SecretStr):
            header = self.authorization.get_secret_value()
            found = [header] + header.split()[1:]
            scheme, _, credential = header.partition(" ")
            if scheme.lower() == "basic":
                try:
                    found.append(base64.b64decode(credential.strip(), validate=True).decode().partition(":")[2])
                except (binascii.Error, UnicodeDecodeError):
                    pass
            return [f for f in found if f]
        return []


def _format_host(host: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host


class Route(BaseModel):
    """A replication route in harperdb-config.yaml (`replication.routes`).

    Harper accepts routes as `wss://host:port` strings, `{hostname, port}` or `{host, port}`
    objects, or bare `host[:port]` strings; all are parsed here. The client always WRITES the URL
    string form: 4.7.29 compares object routes with `(a.host === b.host || a.hostname ===
    b.hostname) && a.port === b.port`, so two `{hostname}` routes on the same port count as the
    same route; strings are compared exactly. `port` None means "the local node's replication
    port". Routes are frozen values: compare them, put them in sets.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    hostname: str = Field(min_length=1, validation_alias=AliasChoices("hostname", "host"))
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Literal["wss", "ws"] = "wss"

    @model_validator(mode="before")
    @classmethod
    def _from_any_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            return cls._parse_string(value)
        if isinstance(value, dict) and "url" in value and "hostname" not in value and "host" not in value:
            if not isinstance(value["url"], str):  # str() of junk would read as a host name
                raise ValueError("route url must be a string")
            return cls._parse_string(value["url"])
        if isinstance(value, dict):
            value = dict(value)
            if isinstance(value.get("port"), str) and value["port"].isdigit():
                value["port"] = int(value["port"])
            key = "hostname" if "hostname" in value else "host"
            host = value.get(key)
            # Harper also reads "host:port" inside the host field (iterateRoutes).
            if isinstance(host, str) and value.get("port") is None and ":" in host and not host.startswith("["):
                name, _, port = host.rpartition(":")
                if port.isdigit() and ":" not in name:
                    value[key], value["port"] = name, int(port)
        return value

    @staticmethod
    def _parse_string(text: str) -> dict[str, Any]:
        text = text.strip()
        if "://" in text:
            parts = urlsplit(text)
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError(f"route url must look like wss://host:port, got {text!r}")
            return {"hostname": parts.hostname, "port": parts.port, "scheme": parts.scheme}
        # bare host or host:port (Harper: a plain route string without :// is a host)
        parts = urlsplit("//" + text)
        if not parts.hostname:
            raise ValueError(f"cannot read route {text!r}")
        return {"hostname": parts.hostname, "port": parts.port}

    @property
    def url(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{_format_host(self.hostname)}{port}"

    def to_wire(self) -> str:
        if self.port is None and self.scheme == "wss":
            # Without a port only the bare-host form lets Harper pick its replication port.
            return _format_host(self.hostname)
        return self.url

    def __str__(self) -> str:
        return self.url


# --------------------------------------------------------------------------- answers

class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


def _to_shard(value: Any) -> int | None:
    """Shards are integers; anything else Harper might hold (null, junk) reads as "no shard"."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


class CaInfo(_Answer):
    """The CA certificate Harper trusts for a peer (`ca_info` of a node record)."""

    issuer: str | None = None
    subject: str | None = None
    subject_alt_name: str | None = Field(default=None, validation_alias=_alias("subjectAltName", "subject_alt_name"))
    serial_number: str | None = Field(default=None, validation_alias=_alias("serialNumber", "serial_number"))
    valid_from: datetime | None = Field(default=None, validation_alias=_alias("validFrom", "valid_from"))
    valid_to: datetime | None = Field(default=None, validation_alias=_alias("validTo", "valid_to"))

    @field_validator("valid_from", "valid_to", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime | None:
        return parse_harper_time(value)


_SOCKET_TIMES = ("lastCommitConfirmed", "lastReceivedRemoteTime", "lastReceivedLocalTime", "sendingMessage")


class DatabaseSocket(_Answer):
    """One replication socket between this node and a peer, for one database.

    Times have 1 s resolution (Harper formats them with toUTCString), so lag below a second reads
    as 0 or 1000 ms. A field Harper has not set yet is None.
    """

    database: str | None = None
    connected: bool = False
    latency: float | None = None  # ms, round trip of the last ping
    thread_id: int | None = Field(default=None, validation_alias=_alias("threadId", "thread_id"))
    nodes: list[str] = Field(default_factory=list)
    last_commit_confirmed: datetime | None = Field(
        default=None, validation_alias=_alias("lastCommitConfirmed", "last_commit_confirmed"))
    last_received_remote_time: datetime | None = Field(
        default=None, validation_alias=_alias("lastReceivedRemoteTime", "last_received_remote_time"))
    last_received_local_time: datetime | None = Field(
        default=None, validation_alias=_alias("lastReceivedLocalTime", "last_received_local_time"))
    sending_message: datetime | None = Field(
        default=None, validation_alias=_alias("sendingMessage", "sending_message"))
    last_received_status: str | None = Field(
        default=None, validation_alias=_alias("lastReceivedStatus", "last_received_status"))
    last_received_version: float | None = Field(
        default=None, validation_alias=_alias("lastReceivedVersion", "last_received_version"))
    back_pressure_percent: float | None = Field(
        default=None, validation_alias=_alias("backPressurePercent", "back_pressure_percent"))
    copying: bool = False  # Harper reported "Copying": a full copy of the database is running

    @model_validator(mode="before")
    @classmethod
    def _note_copying(cls, value: Any) -> Any:
        if isinstance(value, dict) and "copying" not in value:
            if any(value.get(k) == "Copying" for k in _SOCKET_TIMES):
                value = {**value, "copying": True}
        return value

    @field_validator("last_commit_confirmed", "last_received_remote_time", "last_received_local_time",
                     "sending_message", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime | None:
        return parse_harper_time(value)

    @field_validator("nodes", mode="before")
    @classmethod
    def _node_names(cls, value: Any) -> list[str]:
        if not isinstance(value, list):
            return []
        names = []
        for item in value:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                names.append(item["name"])
        return names

    @field_validator("connected", mode="before")
    @classmethod
    def _absent_is_disconnected(cls, value: Any) -> bool:
        return bool(value) if value is not None else False

    @property
    def lag_ms(self) -> float | None:
        """Local receive time minus the remote commit time of the last change received."""
        if self.last_received_local_time is None or self.last_received_remote_time is None:
            return None
        return (self.last_received_local_time - self.last_received_remote_time).total_seconds() * 1000.0

    @property
    def stalled(self) -> bool:
        """Not moving data: disconnected, or paused by back-pressure most of the time."""
        if not self.connected:
            return True
        return (self.back_pressure_percent or 0.0) >= STALLED_BACK_PRESSURE_PERCENT


class CertificateDetails(_Answer):
    serial_number: str | None = Field(default=None, validation_alias=_alias("serial_number", "serialNumber"))
    subject: str | None = None
    issuer: str | None = None


class Certificate(_Answer):
    """One entry of list_certificates (the node's system.hdb_certificate), with its PEM (`kubectl harper
    certificates` shows an external member's own certificate and collects the authorities to trust)."""

    name: str | None = None
    is_authority: bool | None = None
    details: CertificateDetails | None = None
    certificate: str | None = Field(default=None, repr=False)
    # Only the fields above are kept: should an answer ever carry a private key, it is dropped on parsing.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @property
    def serial_number(self) -> str | None:
        return self.details.serial_number if self.details else None


def own_authority(certificates: list[Certificate], node_name: str) -> Certificate | None:
    """The CA that signed the node's own certificate (the one named after the node), which its peers' records show:
    the cluster's authority when the node was given a certificate, else the CA Harper made for itself and named after
    the node (4.7), which it also makes beside a given certificate and then does not use for replication."""
    mine = next((c for c in certificates if not c.is_authority and c.name == node_name and c.details
                 and c.details.issuer), None)
    issuer = mine.details.issuer if mine and mine.details else None
    signer = next((c for c in certificates if c.is_authority and c.details
                   and c.details.subject == issuer), None) if issuer else None
    return signer or next((c for c in certificates if c.is_authority
                           and c.name == f"HarperDB-Certificate-Authority-{node_name}"), None)


class Connection(_Answer):
    """One peer as a node sees it in cluster_status (its hdb_nodes record plus live sockets).

    A retained `authorization` (an HTTP Basic header!) is removed on parsing; only
    `has_authorization` remains, so the status can be logged or written to Kubernetes safely.
    """

    name: str | None = Field(default=None, validation_alias=_alias("name", "node_name"))
    url: str | None = None
    replicates: bool | dict[str, Any] | None = None
    subscriptions: list[Subscription] | None = None
    shard: int | None = None
    ca_info: CaInfo | None = None
    start_time: datetime | None = None
    revoked_certificates: list[str] | None = None
    has_authorization: bool = False
    database_sockets: list[DatabaseSocket] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_credentials(cls, value: Any) -> Any:
        if isinstance(value, dict) and "authorization" in value:
            value = {k: v for k, v in value.items() if k != "authorization"}
            value["has_authorization"] = True
        return value

    @field_validator("subscriptions", mode="wrap")
    @classmethod
    def _tolerant_subscriptions(cls, value: Any, handler: Any) -> list[Subscription] | None:
        if isinstance(value, list):  # answers may carry keys a request must not
            value = [{k: v for k, v in item.items() if k in Subscription._FIELDS} if isinstance(item, dict) else item
                     for item in value]
        try:
            parsed: list[Subscription] | None = handler(value)
            return parsed
        except ValidationError as exc:
            log.warning("ignoring unreadable subscriptions in cluster_status: %s", exc.errors(include_input=False))
            return None

    @field_validator("start_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime | None:
        return parse_harper_time(value)

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> int | None:
        return _to_shard(value)

    @field_validator("database_sockets", mode="before")
    @classmethod
    def _sockets(cls, value: Any) -> Any:
        return value if isinstance(value, list) else []

    @property
    def connected(self) -> bool:
        """Every socket connected, and at least one socket (no socket means never authenticated)."""
        return bool(self.database_sockets) and all(s.connected for s in self.database_sockets)

    @property
    def connected_databases(self) -> list[str]:
        return [s.database for s in self.database_sockets if s.connected and s.database]

    @property
    def lag_ms(self) -> float | None:
        lags = [s.lag_ms for s in self.database_sockets if s.lag_ms is not None]
        return max(lags) if lags else None

    @property
    def back_pressure(self) -> float | None:
        values = [s.back_pressure_percent for s in self.database_sockets if s.back_pressure_percent is not None]
        return max(values) if values else None

    @property
    def stalled_sockets(self) -> list[DatabaseSocket]:
        return [s for s in self.database_sockets if s.stalled]

    def socket(self, database: str) -> DatabaseSocket | None:
        return next((s for s in self.database_sockets if s.database == database), None)


class ClusterStatus(_Answer):
    """The answer of cluster_status.

    `shard` of the node itself is reported only when truthy (Harper checks `if (thisNode?.shard)`),
    so a node on shard 0 shows None here while its peers show 0 for it. `url` is absent until the
    node's own record exists (its first add_node). A peer that never authenticated is missing
    from `connections`; a stopped peer stays listed with `connected: False` sockets.
    """

    type: str | None = None
    node_name: str | None = None
    url: str | None = None
    shard: int | None = None
    is_enabled: bool | None = None
    connections: list[Connection] = Field(default_factory=list)

    @field_validator("connections", mode="before")
    @classmethod
    def _connections(cls, value: Any) -> Any:
        return value if isinstance(value, list) else []

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> int | None:
        return _to_shard(value)

    def connection(self, name: str) -> Connection | None:
        return next((c for c in self.connections if c.name == name), None)

    @property
    def peer_names(self) -> list[str]:
        return [c.name for c in self.connections if c.name]

    @property
    def connected_peers(self) -> list[str]:
        return [c.name for c in self.connections if c.name and c.connected]

    @property
    def max_lag_ms(self) -> float | None:
        lags = [c.lag_ms for c in self.connections if c.lag_ms is not None]
        return max(lags) if lags else None


class NodeWriteResult(_Answer):
    """What add_node / update_node answered when it fully succeeded."""

    message: str
    url: str | None = None  # the peer URL Harper echoed back

    @property
    def node_name(self) -> str | None:
        return node_name_from_url(self.url) if self.url else None


class ConfigureClusterEntry(_Answer):
    node_name: str | None = None
    response: Any = None

    @property
    def message(self) -> str:
        if isinstance(self.response, str):
            return self.response
        message = self.response.get("message") if isinstance(self.response, dict) else None
        if isinstance(message, str):
            return message
        return json.dumps(self.response, default=str)

    @property
    def failed(self) -> bool:
        text = self.message
        return not text.startswith("Successfully") or FALSE_SUCCESS_MARKER in text


class ConfigureClusterResult(_Answer):
    """configure_cluster runs add_node for each connection; it never removes missing nodes."""

    message: str = ""
    connections: list[ConfigureClusterEntry] = Field(default_factory=list)
    failed_nodes: list[str | None] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_nodes and not any(c.failed for c in self.connections)


class RoutesResult(_Answer):
    """Answer of cluster_set_routes / cluster_delete_routes (they only edit the config file)."""

    message: str = ""
    added: list[Route] = Field(default_factory=list, validation_alias=_alias("set", "added"))
    skipped: list[Route] = Field(default_factory=list)
    deleted: list[Route] = Field(default_factory=list)

    @field_validator("added", "skipped", "deleted", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> list[Any]:
        return parse_routes(value)


def parse_routes(value: Any) -> list[Route]:
    """Read a routes list in any of Harper's spellings, skipping entries that are not routes."""
    if not isinstance(value, list):
        return []
    routes = []
    for item in value:
        try:
            routes.append(Route.model_validate(item))
        except (ValueError, TypeError, RecursionError):  # ValidationError, or junk a validator tripped on
            shown = repr(item if not isinstance(item, dict) else sorted(item))
            log.warning("ignoring unreadable route %s", shown if len(shown) <= 200 else shown[:200] + "…")
    return routes


def _jwt_time(token: str, claim: str) -> datetime | None:
    """A time claim (`exp`, `iat`) of a JWT, read without verifying it: only used to know when
    to renew, never to trust anything."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        value = claims.get(claim)
        return datetime.fromtimestamp(float(value), tz=timezone.utc) if value is not None else None
    except (IndexError, ValueError, TypeError, AttributeError, binascii.Error, OverflowError):
        return None


class Tokens(BaseModel):
    """create_authentication_tokens / refresh_operation_token answer; tokens stay secret."""

    model_config = ConfigDict(extra="ignore")

    operation_token: SecretStr
    refresh_token: SecretStr | None = None

    @property
    def operation_expires_at(self) -> datetime | None:
        return _jwt_time(self.operation_token.get_secret_value(), "exp")

    @property
    def operation_issued_at(self) -> datetime | None:
        return _jwt_time(self.operation_token.get_secret_value(), "iat")

    @property
    def refresh_expires_at(self) -> datetime | None:
        return _jwt_time(self.refresh_token.get_secret_value(), "exp") if self.refresh_token else None

    @property
    def refresh_issued_at(self) -> datetime | None:
        return _jwt_time(self.refresh_token.get_secret_value(), "iat") if self.refresh_token else None
