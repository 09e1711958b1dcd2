"""Errors raised by the Harper client.

The class says what the caller should do next, not where the error came from:
- TransientHarperError: retry later with backoff (refused, reset, timeout, 5xx, peer offline).
- PermanentHarperError: retrying the same request will fail the same way; surface it (Stalled).
- FalseSuccessError: Harper answered 200 but its text says part of the write failed, so the
  write must be treated as not done (and verified through cluster_status).

Messages carry Harper's own words but never credentials: the client redacts every secret it
knows from the full text first, then clips the message to MAX_MESSAGE_CHARS (Harper's error
texts can be megabytes), and no error keeps the raw request.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

__all__ = [
    "HarperError",
    "TransientHarperError",
    "PeerUnreachableError",
    "PermanentHarperError",
    "InvalidTargetError",
    "AuthenticationError",
    "AuthorizationError",
    "RequestValidationError",
    "UnknownNodeError",
    "OperationNotFoundError",
    "PeerRejectedError",
    "TLSVerificationError",
    "UnexpectedAnswerError",
    "FalseSuccessError",
    "PeerFailure",
    "parse_peer_failure",
    "clip_message",
    "MAX_MESSAGE_CHARS",
]

# Longest message an error carries; long enough for any real Harper reason, short enough for a
# Kubernetes condition or a log line.
MAX_MESSAGE_CHARS = 2000


def clip_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to at most `limit` characters, saying how much was cut.

    Only ever applied to text that is already redacted: clipping first could cut a secret in
    half, and the half left behind would no longer match the secret the redaction looks for.
    """
    if len(text) <= limit:
        return text
    # The count in the suffix is at most len(text), so sizing the suffix for that is enough.
    keep = max(0, limit - len(f"… ({len(text)} more characters)"))
    return f"{text[:keep]}… ({len(text) - keep} more characters)"


class HarperError(Exception):
    """Base class: `operation` that failed, HTTP `status` (None when no answer), `message`."""

    outcome: ClassVar[str] = "permanent"  # what the client reports to its observer

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None) -> None:
        self.operation = operation
        self.status = status
        self.message = message
        self.url = url  # the operations API URL called, never containing credentials
        super().__init__(operation, status, message)

    @property
    def transient(self) -> bool:
        return self.outcome == "transient"

    def __str__(self) -> str:
        where = f" at {self.url}" if self.url else ""
        status = f" HTTP {self.status}" if self.status is not None else ""
        return f"{self.operation}{where}:{status} {self.message}".strip()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(operation={self.operation!r}, status={self.status!r}, message={self.message!r})"


class TransientHarperError(HarperError):
    """Connection refused or reset, timeout, 5xx: the same request may succeed later.

    `request_sent` is True when the request may have reached Harper before the failure (a timeout
    or reset after sending): a write may then have been applied, so re-read before repeating it.
    """

    outcome = "transient"

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 request_sent: bool = False, timed_out: bool = False) -> None:
        super().__init__(operation, status, message, url=url)
        self.request_sent = request_sent
        self.timed_out = timed_out  # no answer within the timeout (Harper may never answer that request)


class PermanentHarperError(HarperError):
    """The request itself is wrong for this node (credentials, role, input, configuration)."""


class InvalidTargetError(PermanentHarperError):
    """The client was given something it cannot use: an operations URL that is not http(s)://host[:port]
    or carries credentials, a CA bundle that is not PEM, a non-positive timeout or size limit.

    Raised by the constructor (operation "connect", no status) so a wrong setting of one node is
    that node's problem like any other; the message never repeats credentials or the CA bundle.
    """


class AuthenticationError(PermanentHarperError):
    """401: wrong or missing credentials, or a token that could not be renewed."""


class AuthorizationError(PermanentHarperError):
    """403 / `unauthorized_access`: the user is not a super_user (every clustering operation needs one)."""

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 unauthorized_access: list[str] | None = None) -> None:
        super().__init__(operation, status, message, url=url)
        self.unauthorized_access = list(unauthorized_access or [])


class RequestValidationError(PermanentHarperError):
    """400: Harper rejected the shape of the request (wrong type, missing field).

    Also raised, with no status, for a request the client refuses to send (a route it cannot
    read, a body that cannot be encoded as JSON).
    """


class UnknownNodeError(PermanentHarperError):
    """remove_node for a name Harper does not know: 400 `<name> does not exist`.

    Kept apart from RequestValidationError because a remover usually treats it as "already gone".
    """

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 node_name: str | None = None) -> None:
        super().__init__(operation, status, message, url=url)
        self.node_name = node_name


class OperationNotFoundError(PermanentHarperError):
    """400 `Operation 'x' not found`: this Harper version does not have the operation (e.g. set_node)."""


class UnexpectedAnswerError(PermanentHarperError):
    """Something answered that is not Harper's operations API (not JSON, 404, wrong shape,
    nested too deeply, larger than the client's size limit)."""


class TLSVerificationError(PermanentHarperError):
    """The operations API certificate failed verification: fix the CA bundle or verify_tls.

    reason: OpenSSL's verify message when the certificate itself was refused (expired, another CA, a name it does
    not hold); None for a TLS failure of another kind. certificate: what the server presented, read by a second,
    unverified handshake (tls.CertificateInfo), or None."""

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 reason: str | None = None, certificate: Any = None) -> None:
        super().__init__(operation, status, message, url=url)
        self.reason = reason
        self.certificate = certificate


class PeerFailure:
    """What a node said about the *peer* it tried to reach during add_node/update_node.

    Harper phrases these as `Error returned from <peer url>: <reason>`; the reason decides whether
    waiting helps (peer offline) or not (peer refused our credentials or certificate).
    """

    # Reasons where the peer is simply not there yet: waiting (or starting it) helps.
    _TRANSIENT = re.compile(
        r"ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|EPIPE|"
        r"socket hang up|timed? ?out|Timeout|closed before|WebSocket was closed",
        re.IGNORECASE,
    )
    # Reasons where the peer answered and said no: same request, same answer.
    _REJECTED = re.compile(
        r"Unauthorized|\b1008\b|self[- ]signed|altnames|certificate|Login failed|invalid credentials|"
        r"not authorized|unauthorized_access",
        re.IGNORECASE,
    )

    def __init__(self, peer_url: str | None, reason: str) -> None:
        self.peer_url = peer_url
        self.reason = reason

    @property
    def rejected(self) -> bool:
        """The peer answered and refused (credentials, certificate): waiting will not help.

        Harper appends "and connection was required to sign certificate" to *any* failure during
        a first join, so only the words before that suffix say what went wrong.
        """
        head = self.reason.split(" and connection was required", 1)[0]
        return bool(self._REJECTED.search(head)) and not self._TRANSIENT.search(head)

    @property
    def transient(self) -> bool:
        # Unknown peer trouble counts as transient: the contract maps 5xx to "retry later".
        return not self.rejected

    @property
    def closed_at_first_join(self) -> bool:
        """The peer cut the socket (close 1006) during a first join, while it was to sign our certificate: what a
        peer does that still trusts an OLD certificate authority of ours, a wiped node back under its name
        (docs/harper-semantics.md, section 9). Waiting does not mend it; the peer's restart does."""
        head, suffix, _ = self.reason.partition(" and connection was required to sign certificate")
        return bool(suffix) and re.search(r"\b1006\b", head) is not None

    def __repr__(self) -> str:
        return f"PeerFailure(peer_url={self.peer_url!r}, reason={self.reason!r})"


_PEER_RE = re.compile(r"Error returned from (?P<url>\S+?):\s+(?P<reason>.*)$", re.DOTALL)


def parse_peer_failure(text: str) -> PeerFailure | None:
    """Find Harper's `Error returned from <url>: <reason>` inside an answer, if any."""
    m = _PEER_RE.search(text)
    if not m:
        return None
    return PeerFailure(m.group("url"), m.group("reason").strip())


class PeerUnreachableError(TransientHarperError):
    """5xx from add_node/update_node because the peer could not be reached (offline, refused)."""

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 peer: PeerFailure) -> None:
        super().__init__(operation, status, message, url=url, request_sent=True)
        self.peer = peer


class PeerRejectedError(PermanentHarperError):
    """5xx from add_node/update_node because the peer refused: credentials (close 1008),
    an untrusted self-signed certificate (needs verify_tls=False + authorization on first join,
    or a CA), or a certificate that does not name the URL's host."""

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 peer: PeerFailure) -> None:
        super().__init__(operation, status, message, url=url)
        self.peer = peer


class FalseSuccessError(HarperError):
    """HTTP 200 whose text says the write did not (fully) happen.

    Seen on 4.7.29: `Successfully added '...' to cluster but there was an error updating target
    node: Error returned from ...: connect ECONNREFUSED`. The local record WAS written (and
    replicates), the peer was not told. `peer` holds the peer's failure when Harper named one;
    `result` holds the parsed answer (e.g. a ConfigureClusterResult with some failed nodes).
    """

    outcome = "false_success"

    def __init__(self, operation: str, status: int | None, message: str, *, url: str | None = None,
                 peer: PeerFailure | None = None, result: Any = None) -> None:
        super().__init__(operation, status, message, url=url)
        self.peer = peer
        self.result = result

    @property
    def peer_transient(self) -> bool:
        """True when waiting for the peer is likely to fix it (it was offline)."""
        return self.peer.transient if self.peer else True
