"""Serving one connection on stdin/stdout pipes (``ssh host ninep serve --stdio``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ninep.server.transport import Connection

__all__ = ["PipePairTransport", "serve_pipes"]


class PipePairTransport(asyncio.Transport):
    """One duplex transport over a read pipe (stdin) and a write pipe (stdout)."""

    def __init__(self, reader: asyncio.ReadTransport, writer: asyncio.WriteTransport) -> None:
        super().__init__({"peername": "stdio", "socket": None})
        self._reader = reader
        self._writer = writer

    def write(self, data: Any) -> None:
        self._writer.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._writer.writelines(list_of_data)

    def pause_reading(self) -> None:
        self._reader.pause_reading()

    def resume_reading(self) -> None:
        self._reader.resume_reading()

    def is_reading(self) -> bool:
        return self._reader.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._writer.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._writer.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def abort(self) -> None:
        self._reader.close()
        self._writer.abort()


class _Reader(asyncio.Protocol):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn.data_received(data)

    def eof_received(self) -> bool:
        return False  # stdin closed: the client is gone

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)


class _Writer(asyncio.Protocol):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)


async def serve_pipes(conn: Connection, read_fd: int = 0, write_fd: int = 1) -> None:
    """Attach ``conn`` to a pair of pipes (by default stdin and stdout)."""
    loop = asyncio.get_running_loop()
    rfile = open(os.dup(read_fd), "rb", buffering=0)  # noqa: SIM115 - the transport owns it
    wfile = open(os.dup(write_fd), "wb", buffering=0)  # noqa: SIM115
    writer, _ = await loop.connect_write_pipe(lambda: _Writer(conn), wfile)
    reader, _ = await loop.connect_read_pipe(lambda: _Reader(conn), rfile)
    reader.pause_reading()
    conn.connection_made(PipePairTransport(reader, writer))
    reader.resume_reading()
