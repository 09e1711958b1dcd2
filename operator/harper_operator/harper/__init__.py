"""Harper operations API client, its typed requests/answers, errors, and the replication probe.

    async with HarperClient("https://node-0:9925", username=u, password=p, ca_pem=ca) as harper:
        status = await harper.cluster_status()
        await harper.add_node(NodeRequest(hostname="node-1", url="wss://node-1:9933"))

A 200 from Harper is not proof: verify writes with cluster_status() and probe_replication().
Every failure of a node is a HarperError (the client raises nothing else, a bad setting included)
or an unreachable ProbeResult (the probe never raises).
"""

from .client import HarperClient, Observer
from .errors import (
    AuthenticationError,
    AuthorizationError,
    FalseSuccessError,
    HarperError,
    InvalidTargetError,
    OperationNotFoundError,
    PeerFailure,
    PeerRejectedError,
    PeerUnreachableError,
    PermanentHarperError,
    RequestValidationError,
    TLSVerificationError,
    TransientHarperError,
    UnexpectedAnswerError,
    UnknownNodeError,
)
from .models import (
    Authorization,
    CaInfo,
    ClusterStatus,
    ConfigureClusterEntry,
    ConfigureClusterResult,
    Connection,
    DatabaseSocket,
    NodeRequest,
    NodeWriteResult,
    Route,
    RoutesResult,
    Subscription,
    Tokens,
    node_name_from_url,
    parse_harper_time,
)
from .probe import ProbeResult, probe_replication

__all__ = [
    "HarperClient", "Observer",
    "HarperError", "TransientHarperError", "PeerUnreachableError", "PermanentHarperError", "InvalidTargetError",
    "AuthenticationError", "AuthorizationError", "RequestValidationError", "UnknownNodeError",
    "OperationNotFoundError", "PeerRejectedError", "TLSVerificationError", "UnexpectedAnswerError",
    "FalseSuccessError", "PeerFailure",
    "Authorization", "CaInfo", "ClusterStatus", "ConfigureClusterEntry", "ConfigureClusterResult",
    "Connection", "DatabaseSocket", "NodeRequest", "NodeWriteResult", "Route", "RoutesResult",
    "Subscription", "Tokens", "node_name_from_url", "parse_harper_time",
    "ProbeResult", "probe_replication",
]
