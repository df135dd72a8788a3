"""The 9p backend's one connection to the back server: attach, loss, background reconnect."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from dataclasses import dataclass

from ninep.clients import DEFAULT_MSIZE, Client, Fid
from ninep.clients.address import parse_address
from ninep.clients.tls import client_context
from ninep.wire.messages import NONUNAME

__all__ = ["Link", "RemoteSpec", "remote_errors"]

log = logging.getLogger(__name__)

_RETRY_FIRST, _RETRY_MAX = 0.05, 5.0  # seconds between reconnect attempts, doubling


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """Where the back server is and how this server attaches to it (docs/backends.md).

    ``uname``/``n_uname`` are the one identity of every request of the mount: the
    front server's clients' identities are never sent (docs/config.md).
    """

    url: str
    aname: str = ""
    uname: str = "nobody"
    n_uname: int = NONUNAME
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    auth_key: str | None = None
    msize: int = DEFAULT_MSIZE
    timeout: float = 10.0  # seconds for one connect and attach
    readahead: bool = True  # sequential readers' next reads asked for early (handle.py)

    def tls_context(self) -> ssl.SSLContext | None:
        if parse_address(self.url).scheme != "tls":
            return None
        return client_context(self.ca, self.cert, self.key)


class remote_errors:
    """A lost connection (or a server breaking the protocol) is EIO, as v9fs answers;
    an Rlerror's errno passes through as it came. A class, not a generator: it is on
    every request's path."""

    __slots__ = ("link",)

    def __init__(self, link: Link) -> None:
        self.link = link

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if isinstance(exc, ConnectionError):  # ProtocolError is one; its errno is None
            raise self.link.failed(exc) from None


class Link:
    """The client connection and its root fid; ``generation`` counts the attaches, so
    a fid of an older one is known to be gone."""

    def __init__(self, spec: RemoteSpec) -> None:
        self.spec = spec
        self.generation = 0
        self.client: Client | None = None
        self.root: Fid | None = None
        self.changes = 0  # changes made through this mount: read-ahead older is stale
        self.ahead_bytes = 0  # bytes its open files hold read ahead (handle.py)
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    def changed(self) -> None:
        """A change goes to the back server: data read ahead before it is not used."""
        self.changes += 1

    @property
    def up(self) -> bool:
        return self.client is not None and not self.client.closed

    @staticmethod
    def ino(qid_path: int) -> int:
        """Our inode number for a back qid.path: the path itself. vfs/ puts it under
        this mount's device bits and folds any bits above 48 in (Mount.qid_path), so
        two imports never collide, hard links (one back qid.path) share a number, and
        the number is a function of the back server's alone: the same in every worker
        and after a restart, where a table of first sightings differed from process
        to process and grew with every file seen."""
        return qid_path

    def current(self) -> tuple[Client, Fid, int]:
        """The live connection, its root fid and generation; EIO while there is none."""
        client, root = self.client, self.root
        if client is None or root is None or client.closed:
            raise OSError(errno.EIO, f"9p backend {self.spec.url}: not connected "
                          "(reconnecting)")
        return client, root, self.generation

    async def connect(self) -> None:
        """Connect and attach once; OSError (or a ProtocolError) when that fails."""
        spec = self.spec
        client = await asyncio.wait_for(
            Client.connect(spec.url, spec.msize, tls=spec.tls_context()), spec.timeout)
        try:
            tree = await asyncio.wait_for(
                client.attach(spec.uname, spec.aname, spec.n_uname, key=spec.auth_key),
                spec.timeout)
        except BaseException:
            await client.close()
            raise
        self.client, self.root = client, tree.root
        self.generation += 1
        self._watch = asyncio.ensure_future(self._watch_loss(client))

    async def _watch_loss(self, client: Client) -> None:
        await client.wait_closed()
        if self.client is client:
            self.lost(ConnectionError("the connection closed"))

    def failed(self, exc: OSError) -> OSError:
        """What a request's error is to the mount's caller: a lost connection (or a
        server breaking the protocol: a ConnectionError) is EIO, and a reconnect starts
        if the connection is gone; an Rlerror's errno passes through."""
        if not isinstance(exc, ConnectionError):
            return exc
        self.lost(exc)
        return OSError(errno.EIO, f"9p backend {self.spec.url}: {exc}")

    def lost(self, reason: BaseException) -> None:
        """The connection is gone: fail fast from now on and reconnect in the background."""
        if self._closing or self._reconnect is not None:
            return
        client = self.client
        if client is not None and not client.closed:
            return  # one request's failure on a live connection: not a loss
        log.warning("9p backend %s: connection lost (%s); reconnecting in the background",
                    self.spec.url, reason)
        self.client = self.root = None
        self._reconnect = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = _RETRY_FIRST
        try:
            while not self._closing:
                try:
                    await self.connect()
                except (TimeoutError, OSError, ssl.SSLError) as exc:
                    log.debug("9p backend %s: reconnect failed: %s", self.spec.url, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                    continue
                log.warning("9p backend %s: reconnected", self.spec.url)
                return
        finally:
            self._reconnect = None

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnect, self._watch):
            if task is not None:
                task.cancel()
        client, self.client, self.root = self.client, None, None
        if client is not None:
            await client.close()
