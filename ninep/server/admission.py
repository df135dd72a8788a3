"""Which new connections a server takes: at most ``max_connections`` at once, and at most
``max_connections_per_peer`` from one IP address, each counted from accept until it is
fully closed. A connection over either limit is closed at once, before any 9P is read
(and, over TLS, before any handshake), and costs nothing afterwards."""

from __future__ import annotations

import ipaddress
import logging
import time

from ninep.config.connections import ConnectionLimits
from ninep.server import metrics

__all__ = ["Admission", "ConnectionLimits", "Ticket", "peer_host"]

log = logging.getLogger(__name__)

#: Seconds in which each peer's refusals are logged once; the rest are counted and
#: summed up in one line when the next window starts, so a flood does not flood the log.
REFUSAL_LOG_WINDOW = 60.0
#: Peers logged by name in one window: past it (a flood from many addresses, such as
#: an IPv6 /64) refusals are only counted, and the memory kept for the log is bounded.
REFUSAL_LOG_PEERS = 256


def peer_host(address: object, kind: str) -> str | None:
    """The IP address a tcp or tls peer is counted under (an IPv4 peer of a dual-stack
    listener as its IPv4 address); None for peers that are local and admitted by file
    permissions: UNIX sockets, stdio, a socket handed over as stdin."""
    if kind not in ("tcp", "tls") or not isinstance(address, tuple) or not address:
        return None
    host = str(address[0])
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


class Ticket:
    """One admitted connection's place, given back once by :meth:`release`."""

    __slots__ = ("_admission", "_host", "_released")

    def __init__(self, admission: Admission, host: str | None) -> None:
        self._admission = admission
        self._host = host
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission.released(self._host)


class Admission:
    """The connections one server process holds, in all and per peer address."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self.open = 0
        self._per_peer: dict[str, int] = {}
        self._log = _RefusalLog()

    def admit(self, address: object, kind: str) -> Ticket | None:
        """A place for a connection just accepted from ``address`` (the socket's peer
        name), or None: the caller closes it at once; it was counted as refused and
        logged (once per peer per window)."""
        host = peer_host(address, kind)
        limits = self.limits
        if self.open >= limits.max_connections:
            self._refuse(host or f"a {kind} peer", f"the server holds {self.open} connections, "
                         f"its max_connections of {limits.max_connections}")
            return None
        if host is not None:
            held = self._per_peer.get(host, 0)
            if held >= limits.max_connections_per_peer:
                self._refuse(host, f"it holds {held} connections, the "
                             f"max_connections_per_peer of {limits.max_connections_per_peer}")
                return None
            self._per_peer[host] = held + 1
        self.open += 1
        return Ticket(self, host)

    def released(self, host: str | None) -> None:
        self.open -= 1
        if host is not None:
            left = self._per_peer[host] - 1
            if left:
                self._per_peer[host] = left
            else:
                del self._per_peer[host]  # the table holds only peers with connections

    def held_by(self, host: str) -> int:
        return self._per_peer.get(host, 0)

    def _refuse(self, peer: str, why: str) -> None:
        metrics.refused()
        self._log.refused(peer, why)


class _RefusalLog:
    """A warning for a peer's first refused connection in each window; the others
    are counted, and the count is logged when a later window's first refusal comes."""

    def __init__(self) -> None:
        self._window_start = -REFUSAL_LOG_WINDOW
        self._logged: set[str] = set()
        self._unlogged = 0

    def refused(self, peer: str, why: str) -> None:
        now = time.monotonic()
        if now - self._window_start >= REFUSAL_LOG_WINDOW:
            if self._unlogged:
                log.warning("%d more connections were refused in the last %g s and not "
                            "logged one by one", self._unlogged, REFUSAL_LOG_WINDOW)
            self._window_start = now
            self._logged.clear()
            self._unlogged = 0
        if peer in self._logged or len(self._logged) >= REFUSAL_LOG_PEERS:
            self._unlogged += 1
            return
        self._logged.add(peer)
        log.warning("%s: connection refused: %s (more from it within %g s are counted, "
                    "not logged)", peer, why, REFUSAL_LOG_WINDOW)
