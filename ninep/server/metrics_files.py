"""The ``metrics`` backend: the server's live view as files, for an operator's namespace.

A directory of three read-only files, each rendered afresh when it is opened
(so one open reads one consistent snapshot, as diod's ``ctl`` files do):

- ``connections``: each open connection, its peer, its attaches (uname, the
  namespace and policy they got), the requests it has waiting or held back,
  its counts per message type, and per type the requests that waited and their
  mean wait;
- ``ops``: per message type, the requests received since the server started and,
  for those that waited, how long (mean, and the histogram's 50th and 99th
  percentile bounds);
- ``metrics``: the Prometheus text of ninep/server/metrics_http.py.

They show every client's identity: mount this only in a namespace that a policy
grants to operators (docs/config.md, "Metrics").
"""

from __future__ import annotations

import errno
import itertools
import stat
import time
from collections.abc import Callable

from ninep.backends.registry import Options
from ninep.backends.synthetic import SyntheticBackend
from ninep.server import metrics
from ninep.vfs.node import Attr, Handle, LeafNode, Node, OpenFlags

__all__ = ["MetricsBackend", "RenderedFile", "open_backend", "render_connections",
           "render_ops"]

_inos = itertools.count(2)


class _SnapshotHandle(Handle):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, offset: int, size: int) -> bytes:
        return self.data[offset:offset + size]


class RenderedFile(LeafNode):
    """A read-only file whose text is rendered at each open. Its size is that of a
    rendering made for the getattr, which a client caching pages (v9fs cache=loose)
    trusts; without a cache, reads simply run to the end of the open's own text."""

    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render
        self.ino = next(_inos)
        self.born = time.time_ns()

    def peek_attr(self) -> Attr:
        now = time.time_ns()
        return Attr(ino=self.ino, mode=stat.S_IFREG | 0o444, uid=0, gid=0, nlink=1,
                    size=len(self.render().encode()), atime_ns=now, mtime_ns=now,
                    ctime_ns=self.born)

    async def getattr(self) -> Attr:
        return self.peek_attr()

    async def open(self, flags: OpenFlags) -> Handle:
        if not flags.read_only_access:
            raise OSError(errno.EACCES, "the metrics files are read-only")
        return _SnapshotHandle(self.render().encode())


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def render_connections() -> str:
    snap = metrics.snapshot()
    lines = [f"# {len(snap.connections)} open, {snap.accepted} accepted since the "
             f"server started ({snap.refused} refused over a limit), {snap.waiting} "
             "requests waiting"]
    for conn in snap.connections:
        lines.append(f"conn {conn.number} {conn.peer} since {_when(conn.opened_at)} "
                     f"requests {conn.requests} waiting {conn.waiting} queued {conn.queued}")
        for a in conn.attaches:
            lines.append(f"  attach uname={a.uname!r} uid={a.uid} aname={a.aname!r} "
                         f"namespace={a.namespace!r} policy={a.policy!r} {a.access}")
        if conn.counts:
            lines.append("  ops " + " ".join(f"{op}={count}" for op, count in conn.counts))
        if conn.waits:
            lines.append("  waited " + " ".join(f"{op}={n}/{seconds / n * 1000:.3f}ms"
                                                for op, n, seconds in conn.waits))
    return "\n".join(lines) + "\n"


def _bound(op: metrics.OpView, quantile: float) -> str:
    """The upper bound of the histogram bucket holding ``quantile`` of the waits."""
    rank = quantile * op.waited
    for bound, cumulative in zip(metrics.WAIT_BUCKETS, op.buckets, strict=False):
        if cumulative >= rank:
            return f"<={bound * 1000:g}"
    return f">{metrics.WAIT_BUCKETS[-1] * 1000:g}"


def render_ops() -> str:
    snap = metrics.snapshot()
    lines = [f"{'op':<14}{'requests':>12}{'waited':>10}{'mean ms':>10}{'p50 ms':>10}"
             f"{'p99 ms':>10}"]
    for op in snap.ops:
        if op.waited:
            mean = f"{op.wait_seconds / op.waited * 1000:.3f}"
            p50, p99 = _bound(op, 0.5), _bound(op, 0.99)
        else:
            mean = p50 = p99 = "-"
        lines.append(f"{op.op:<14}{op.count:>12}{op.waited:>10}{mean:>10}{p50:>10}{p99:>10}")
    return "\n".join(lines) + "\n"


def _render_prometheus() -> str:
    from ninep.server.metrics_http import render
    return render()[0].decode()


class MetricsBackend(SyntheticBackend):
    kind = "metrics"
    read_only = True

    def __init__(self) -> None:
        children: dict[str, Node] = {
            "connections": RenderedFile(render_connections),
            "ops": RenderedFile(render_ops),
            "metrics": RenderedFile(_render_prometheus),
        }
        super().__init__(children)


async def open_backend(source: str, options: Options, read_only: bool) -> MetricsBackend:
    """The live view of this server process (it takes no source and no options)."""
    return MetricsBackend()
