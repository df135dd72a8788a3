"""A 9P tracing relay between the guest and the server (``NINEP_KERNEL_TRACE=1``).

It listens on its own TCP port and UNIX socket, opens one server connection per guest
connection, forwards the bytes unchanged and writes one line per message (decoded with
``ninep.wire.messages``, truncated) to ``trace.log`` in the run directory: the 9P exchange
behind a failing scenario. A server that goes away closes the guest's side too, so the
server-restart check behaves as without the relay.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from ninep.wire import messages as m

__all__ = ["TraceRelay"]

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class TraceRelay:
    """Relay guest connections to ``127.0.0.1:port`` (TCP) or ``socket`` (UNIX), logging."""

    def __init__(self, server_port: int, server_socket: Path, log_path: Path) -> None:
        self.server_port = server_port
        self.server_socket = server_socket
        self.sockdir = Path(tempfile.mkdtemp(prefix="ninep-trace-"))
        self.socket = self.sockdir / "trace.sock"
        self.port = 0
        self.log: TextIO = open(log_path, "w", buffering=1)  # noqa: SIM115 - closed in close()
        self.ids = itertools.count(1)
        self.started = time.monotonic()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(30)

    async def _listen(self) -> None:
        tcp = await asyncio.start_server(
            lambda r, w: self._relay(r, w, lambda: asyncio.open_connection(
                "127.0.0.1", self.server_port)), "127.0.0.1", 0)
        self.port = tcp.sockets[0].getsockname()[1]
        await asyncio.start_unix_server(
            lambda r, w: self._relay(r, w, lambda: asyncio.open_unix_connection(
                str(self.server_socket))), str(self.socket))

    def _write(self, line: str) -> None:
        self.log.write(f"{time.monotonic() - self.started:9.3f} {line}\n")

    async def _relay(self, guest_r: asyncio.StreamReader, guest_w: asyncio.StreamWriter,
                     opener: Opener) -> None:
        cid = next(self.ids)
        try:
            server_r, server_w = await opener()
        except OSError as exc:
            self._write(f"c{cid} cannot reach the server: {exc}")
            guest_w.close()
            return
        self._write(f"c{cid} connected")
        await asyncio.gather(self._pump(cid, ">", guest_r, server_w),
                             self._pump(cid, "<", server_r, guest_w))
        self._write(f"c{cid} closed")

    async def _pump(self, cid: int, arrow: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(4)
                (size,) = struct.unpack("<I", head)
                frame = head + await reader.readexactly(max(size - 4, 0))
                writer.write(frame)
                self._write(f"c{cid} {arrow} {_describe(frame)}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._write(f"c{cid} {arrow} end: {type(exc).__name__}")
        finally:
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.log.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)


def _describe(frame: bytes) -> str:
    try:
        tag, msg = m.decode(frame)
    except Exception as exc:  # a frame our codec rejects is worth seeing too
        return f"undecodable {len(frame)} bytes ({exc}): {frame[:32].hex()}"
    text = repr(msg)
    if len(text) > 240:
        text = text[:240] + f"... ({len(frame)} bytes)"
    return f"tag={tag} {text}"
