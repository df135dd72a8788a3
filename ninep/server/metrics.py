"""What the server counts for its operators: connections, requests in flight, and per
operation the requests received and how long those that waited took.

The transport pays for this on every request with one list increment
(``ConnectionStats.counts[mtype] += 1``). Times are taken only for requests that
wait (the ones that get a Task: a cold passthrough read, a blocked Tlock, an ext2
write): reading the clock twice costs ~0.3 us here, ~9% of a RAM walk answered
inline, while a Task already costs several microseconds. A request answered inline
took no longer than its share of the CPU, which the counts and the process's CPU
time already show.

Everything lives in this process (one server per process); a connection's figures
are folded into the totals when it closes. The Prometheus endpoint
(ninep/server/metrics_http.py) and the operator's files (ninep/server/metrics_files.py) both
render a ``Snapshot`` taken on the event loop, so they never see a table that a
request is changing.
"""

from __future__ import annotations

import bisect
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ninep.vfs.policy import Peer
from ninep.wire import messages as m

if TYPE_CHECKING:
    from ninep.server.session import Attachment, Session

__all__ = [
    "WAIT_BUCKETS",
    "AttachView",
    "ConnectionStats",
    "ConnectionView",
    "Observed",
    "OpView",
    "Snapshot",
    "closed",
    "op_name",
    "opened",
    "refused",
    "snapshot",
]

#: Upper bounds (seconds) of the wait histogram: a thread-pool hop is ~50 us, a
#: cold disk read milliseconds, a blocked Tlock anything up to hours.
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TYPES = 256


class _Waits:
    """A histogram of the requests of one type that waited: counts per bucket, a sum."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(WAIT_BUCKETS) + 1)  # the last one: over every bound
        self.total = 0.0

    def add(self, other: _Waits) -> None:
        for index, count in enumerate(other.buckets):
            self.buckets[index] += count
        self.total += other.total


class ConnectionStats:
    """One connection's figures. The transport holds ``counts`` and increments it
    for every frame it receives, indexed by message type."""

    __slots__ = ("__weakref__", "conn", "counts", "number", "opened_at", "peer", "waits")

    def __init__(self) -> None:
        self.counts = [0] * _TYPES
        self.waits: dict[int, _Waits] = {}
        self.number = 0
        self.peer: Peer | None = None
        self.opened_at = 0.0
        # the live connection, for what only it knows (its session, requests waiting)
        self.conn: Callable[[], Observed | None] = lambda: None

    def waited(self, mtype: int, started: float) -> None:
        """A request of type ``mtype`` that waited has been answered; it began at
        ``started`` (time.perf_counter())."""
        seconds = time.perf_counter() - started
        waits = self.waits.get(mtype)
        if waits is None:
            waits = self.waits[mtype] = _Waits()
        waits.buckets[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
        waits.total += seconds


class Observed(Protocol):
    """What the metrics read of a live connection (transport.Connection)."""

    @property
    def session(self) -> Session | None: ...

    def waiting_and_queued(self) -> tuple[int, int]:
        """(requests waiting, frames received but not started)."""


_live: dict[int, ConnectionStats] = {}
_closed = ConnectionStats()  # the figures of connections that have gone
_accepted = 0
_refused = 0  # connections closed at accept, over max_connections(_per_peer)


def opened(stats: ConnectionStats, conn: Observed, peer: Peer, number: int) -> None:
    """A connection was made: list it."""
    global _accepted
    _accepted += 1
    stats.number = number
    stats.peer = peer
    stats.opened_at = time.time()
    stats.conn = weakref.ref(conn)
    _live[number] = stats


def refused() -> None:
    """A connection was closed at accept, over a limit (ninep/server/admission.py)."""
    global _refused
    _refused += 1


def closed(stats: ConnectionStats) -> None:
    """A connection is gone: fold its figures into the totals."""
    if _live.pop(stats.number, None) is not stats:
        return
    for mtype, count in enumerate(stats.counts):
        if count:
            _closed.counts[mtype] += count
    for mtype, waits in stats.waits.items():
        _closed.waits.setdefault(mtype, _Waits()).add(waits)


def op_name(mtype: int) -> str:
    """A message type as the spec names it (Twalk), or its number if unknown."""
    cls = m.MESSAGE_TYPES.get(mtype)
    return cls.__name__ if cls is not None else str(mtype)


@dataclass(frozen=True, slots=True)
class AttachView:
    """One attach a connection holds: who, and which namespace the policy gave."""

    uname: str
    uid: int
    aname: str
    namespace: str
    policy: str
    access: str  # "rw", "ro" (granted or narrowed by a reload), "revoked"


@dataclass(frozen=True, slots=True)
class ConnectionView:
    number: int
    peer: Peer
    opened_at: float
    requests: int
    waiting: int
    queued: int
    attaches: tuple[AttachView, ...]
    counts: tuple[tuple[str, int], ...]  # (op, count), counted ops only
    waits: tuple[tuple[str, int, float], ...]  # (op, requests that waited, seconds)


@dataclass(frozen=True, slots=True)
class OpView:
    """One message type over every connection since the server started."""

    op: str
    count: int
    waited: int
    wait_seconds: float
    buckets: tuple[int, ...]  # cumulative, one per WAIT_BUCKETS bound then +Inf


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    accepted: int
    connections: tuple[ConnectionView, ...]
    ops: tuple[OpView, ...]
    refused: int = 0

    @property
    def waiting(self) -> int:
        return sum(c.waiting for c in self.connections)


def snapshot() -> Snapshot:
    """Every figure at this moment (call it on the event loop)."""
    counts = list(_closed.counts)
    waits: dict[int, _Waits] = {}
    for mtype, hist in _closed.waits.items():
        waits.setdefault(mtype, _Waits()).add(hist)
    views = []
    for stats in list(_live.values()):
        for mtype, count in enumerate(stats.counts):
            counts[mtype] += count
        for mtype, hist in stats.waits.items():
            waits.setdefault(mtype, _Waits()).add(hist)
        view = _view(stats)
        if view is not None:
            views.append(view)
    ops = []
    for mtype, count in enumerate(counts):
        hist = waits.get(mtype, _Waits())
        if count or hist.total:
            cumulative, running = [], 0
            for bucket in hist.buckets:
                running += bucket
                cumulative.append(running)
            ops.append(OpView(op_name(mtype), count, running, hist.total, tuple(cumulative)))
    return Snapshot(time.time(), _accepted, tuple(views), tuple(ops), _refused)


def _view(stats: ConnectionStats) -> ConnectionView | None:
    conn = stats.conn()
    if conn is None or stats.peer is None:
        return None
    waiting, queued = conn.waiting_and_queued()
    session = conn.session
    attaches = tuple(_attach_view(a) for a in
                     list(session.attachments.values())) if session is not None else ()
    counts = tuple((op_name(t), c) for t, c in enumerate(stats.counts) if c)
    waits = tuple((op_name(t), sum(w.buckets), w.total) for t, w in sorted(stats.waits.items()))
    return ConnectionView(stats.number, stats.peer, stats.opened_at, sum(stats.counts),
                          waiting, queued, attaches, counts, waits)


def _attach_view(attachment: Attachment) -> AttachView:
    request = attachment.request
    access = ("revoked" if attachment.revoked else "ro" if attachment.read_only else "rw")
    return AttachView(request.uname, request.cred.uid, request.aname,
                      attachment.rule.namespace.name, attachment.rule.name, access)
