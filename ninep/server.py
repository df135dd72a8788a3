"""The server: listeners on TCP and UNIX sockets, each connection a transport.Connection."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from urllib.parse import urlsplit

from vfs.locks import LockManager
from vfs.policy import Policy

from .session import ServerLimits
from .transport import Connection

__all__ = ["ListenAddress", "Server", "parse_listen"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where to listen: ``tcp://HOST:PORT`` or ``unix:///path``."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.kind == "unix" else f"tcp://{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """Parse a --listen value; a bad one raises ValueError naming it."""
    parts = urlsplit(text)
    if parts.scheme == "tcp":
        if not parts.hostname or parts.port is None:
            raise ValueError(f"--listen {text!r}: expected tcp://HOST:PORT")
        return ListenAddress("tcp", parts.hostname, parts.port)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError(f"--listen {text!r}: expected unix:///path/to/socket")
        return ListenAddress("unix", path=path)
    raise ValueError(f"--listen {text!r}: the scheme must be tcp:// or unix://")


class Server:
    """Serves one Policy on any number of listeners."""

    def __init__(self, policy: Policy, limits: ServerLimits | None = None) -> None:
        self.policy = policy
        self.limits = limits or ServerLimits()
        self.locks = LockManager()
        self._servers: list[asyncio.AbstractServer] = []

    def connection(self, kind: str) -> Connection:
        return Connection(self.policy, self.locks, self.limits, kind)

    async def listen(self, address: ListenAddress) -> list[str]:
        """Start listening; returns the bound addresses (the real port when 0 was asked)."""
        loop = asyncio.get_running_loop()
        if address.kind == "tcp":
            srv = await loop.create_server(lambda: self.connection("tcp"), address.host,
                                           address.port, reuse_address=True)
            bound = [f"tcp://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in srv.sockets]
        else:
            _remove_stale_socket(address.path)
            srv = await loop.create_unix_server(lambda: self.connection("unix"), address.path)
            bound = [f"unix://{address.path}"]
        self._servers.append(srv)
        for where in bound:
            log.info("listening on %s", where)
        return bound

    async def serve_forever(self) -> None:
        await asyncio.gather(*(s.serve_forever() for s in self._servers))

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by an earlier run; refuse to remove anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ValueError(f"--listen unix://{path}: exists and is not a socket")
    os.unlink(path)
