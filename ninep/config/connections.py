"""The server process's bounds on connections ([server] max_connections,
max_connections_per_peer, --max-connections...): read here, applied by
ninep/server/admission.py."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONNECTION_LIMIT_KEYS", "MOST_CONNECTIONS", "ConnectionLimits"]

#: the largest value either limit takes (the descriptor limit lowers it further)
MOST_CONNECTIONS = 1 << 24
#: their keys in [server], each a field of ConnectionLimits
CONNECTION_LIMIT_KEYS = ("max_connections", "max_connections_per_peer")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """A server process's bounds on connections: a process setting, not a policy's
    (vfs/policy.py Limits), since a policy is chosen at attach, long after a
    connection was admitted."""

    # A host with many v9fs mounts uses one connection per mount, a QEMU guest one
    # per share: 1024 is far above either; at ~24 MiB a connection can hold at most
    # (docs/architecture.md, "Flow control"), it is also what bounds the server.
    max_connections: int = 1024
    # a quarter of it: one address (a NAT, a busy build host) cannot take them all
    max_connections_per_peer: int = 256
