"""The operator's Prometheus endpoint: ninep/server/metrics.py's figures in the text format,
rendered by prometheus-client and served by a small HTTP/1.1 listener on the event loop.

The listener answers ``GET /metrics`` (and ``HEAD``); anything else is 404 or 405.
It runs on the server's own event loop rather than in prometheus-client's
threaded ``start_http_server``, so a scrape reads the connection tables between
two requests, never while one is changing them, and the hot path takes no lock.
Each scrape is one short connection: the request head is read (8 KiB, 10 s at
most), the reply written, the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ninep.config.listen import parse_metrics_address
from ninep.server import metrics
from ninep.server.listeners import remove_stale_socket

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["DEFAULT_METRICS", "MetricsListener", "parse_metrics_address", "render"]

log = logging.getLogger(__name__)

DEFAULT_METRICS = "tcp://127.0.0.1:9640"
_HEAD_LIMIT = 8192
_HEAD_TIMEOUT = 10.0


class _Collector:
    """A prometheus-client collector over one snapshot of ninep/server/metrics.py."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )
        snap = metrics.snapshot()
        yield CounterMetricFamily("ninep_connections_accepted", "Connections accepted "
                                  "since the server started", value=snap.accepted)
        yield CounterMetricFamily("ninep_connections_refused", "Connections closed at "
                                  "accept: over max_connections or max_connections_per_peer",
                                  value=snap.refused)
        live = GaugeMetricFamily("ninep_connections", "Connections open now",
                                 labels=["transport"])
        by_transport: dict[str, int] = {}
        for conn in snap.connections:
            by_transport[conn.peer.transport] = by_transport.get(conn.peer.transport, 0) + 1
        for transport, count in sorted(by_transport.items()):
            live.add_metric([transport], count)
        yield live
        yield GaugeMetricFamily("ninep_requests_waiting", "Requests in flight that wait "
                                "(a Task: disk, thread pool, lock)", value=snap.waiting)
        yield from _op_families(snap)
        yield from _connection_families(snap)


def _op_families(snap: metrics.Snapshot) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    requests = CounterMetricFamily("ninep_requests", "Requests received, by message type",
                                   labels=["op"])
    waits = HistogramMetricFamily("ninep_request_wait_seconds", "Requests that waited: time "
                                  "from their first wait to their reply, by message type",
                                  labels=["op"])
    bounds = [*(str(b) for b in metrics.WAIT_BUCKETS), "+Inf"]
    for op in snap.ops:
        requests.add_metric([op.op], op.count)
        if op.waited:
            waits.add_metric([op.op], list(zip(bounds, op.buckets, strict=True)),
                             op.wait_seconds)
    yield requests
    yield waits


def _connection_families(snap: metrics.Snapshot) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    info = GaugeMetricFamily("ninep_connection_info", "One per open connection: its peer",
                             labels=["conn", "transport", "peer", "peer_uid", "cert_cn"])
    attach = GaugeMetricFamily("ninep_attach_info", "One per attach a connection holds: who, "
                               "and the namespace its policy gave",
                               labels=["conn", "uname", "uid", "aname", "namespace", "policy",
                                       "access"])
    total = CounterMetricFamily("ninep_connection_requests", "Requests received on a "
                                "connection", labels=["conn"])
    waiting = GaugeMetricFamily("ninep_connection_requests_waiting", "Requests in flight on "
                                "a connection that wait", labels=["conn"])
    for conn in snap.connections:
        number = str(conn.number)
        peer = conn.peer
        info.add_metric([number, peer.transport, peer.address,
                         "" if peer.uid is None else str(peer.uid),
                         peer.cert.subject_cn or "" if peer.cert is not None else ""], 1)
        for a in conn.attaches:
            attach.add_metric([number, a.uname, str(a.uid), a.aname, a.namespace, a.policy,
                               a.access], 1)
        total.add_metric([number], conn.requests)
        waiting.add_metric([number], conn.waiting)
    yield from (info, attach, total, waiting)


_registry: CollectorRegistry | None = None


def _the_registry() -> CollectorRegistry:
    """Ours, plus the process's CPU, memory and descriptors and the Python runtime."""
    global _registry
    if _registry is None:
        from prometheus_client import (
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )
        from prometheus_client.registry import CollectorRegistry
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        _registry = registry
    return _registry


def render(accept: str = "") -> tuple[bytes, str]:
    """The exposition and its content type (OpenMetrics when ``accept`` asks for it)."""
    from prometheus_client.exposition import choose_encoder
    encoder, content_type = choose_encoder(accept)
    return encoder(_the_registry()), content_type


class MetricsListener:
    """The HTTP listener of the metrics endpoint."""

    def __init__(self, address: str) -> None:
        self.kind, self.where, self.port = parse_metrics_address(address)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        """Listen; returns the bound address (the real port when 0 was asked)."""
        try:
            render()  # fail at start-up, not at the first scrape
        except ImportError as exc:
            raise ValueError(f"--metrics needs prometheus-client (pip install "
                             f"'ninep[server]'): {exc}") from None
        if self.kind == "tcp":
            self._server = await asyncio.start_server(self._serve, self.where, self.port,
                                                      reuse_address=True, limit=_HEAD_LIMIT)
            host, port = self._server.sockets[0].getsockname()[:2]
            bound = f"http://{host}:{port}/metrics"
        else:
            remove_stale_socket(self.where, "metrics address")
            self._server = await asyncio.start_unix_server(self._serve, self.where,
                                                           limit=_HEAD_LIMIT)
            bound = f"unix://{self.where} (GET /metrics)"
        log.info("metrics on %s", bound)
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if self.kind == "unix":
                try:
                    os.unlink(self.where)
                except OSError:
                    pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
            status, body, content_type, method = _answer(head)
            writer.write(_response(status, body, content_type, method == "HEAD"))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass  # a scraper that went away or sent no request: nothing to answer
        finally:
            writer.close()


def _answer(head: bytes) -> tuple[str, bytes, str, str]:
    """(status, body, content type, method) for one request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "400 Bad Request", b"bad request\n", "text/plain", ""
    method, target = parts[0], parts[1]
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", b"GET /metrics\n", "text/plain", method
    if target.split("?", 1)[0] != "/metrics":
        return "404 Not Found", b"the metrics are at /metrics\n", "text/plain", method
    accept = next((line.split(":", 1)[1].strip() for line in lines[1:]
                   if line.lower().startswith("accept:")), "")
    body, content_type = render(accept)
    return "200 OK", body, content_type, method


def _response(status: str, body: bytes, content_type: str, head_only: bool) -> bytes:
    header = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return header if head_only else header + body

