"""What a reload leaves the fids of an attach whose rights shrank: handles that refuse
writes (EROFS), and a stale location and handle that refuse everything (ESTALE).

A revoked fid keeps its number until the client clunks it, as an NFS client's
file handle goes stale when the export is withdrawn (ESTALE): every request on
it fails, and Tclunk closes what it held. A handle is never closed under a
request that may still be using it: the original is closed at that clunk.
"""

from __future__ import annotations

import errno
import inspect
from typing import NoReturn

from .namespace import Location, Mount
from .node import Backend, Handle, Node

__all__ = ["STALE", "ReadOnlyHandle", "StaleHandle", "StaleNode"]

_STALE_DEV = 0xFFFE


def _stale_error() -> OSError:
    return OSError(errno.ESTALE, "this attach was revoked by a reload of the policies")


class ReadOnlyHandle(Handle):
    """An open file of an attach made read-only by a reload: a write is EROFS, as on
    Linux after a forced remount read-only; reads and the final close go through."""

    def __init__(self, inner: Handle) -> None:
        self.inner = inner

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        return await self.inner.read(offset, size)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        raise OSError(errno.EROFS, "read-only file system (narrowed by a reload)")

    async def fsync(self, datasync: bool) -> None:
        await self.inner.fsync(datasync)

    async def close(self) -> None:
        await self.inner.close()


class StaleHandle(Handle):
    """An open file of a revoked attach: everything is ESTALE but the close."""

    def __init__(self, inner: Handle) -> None:
        self.inner = inner

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        raise _stale_error()

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        raise _stale_error()

    async def fsync(self, datasync: bool) -> None:
        raise _stale_error()

    async def close(self) -> None:
        await self.inner.close()


async def _refuse(*args: object, **kwargs: object) -> NoReturn:
    raise _stale_error()


class StaleNode(Node):
    """Every method of the backend contract answers ESTALE (set below, so that a
    method added to Node later is covered too); nothing is at hand to peek at."""

    def peek_attr(self) -> None:
        return None


for _name, _method in vars(Node).items():
    if inspect.iscoroutinefunction(_method):
        setattr(StaleNode, _name, _refuse)


class _StaleBackend(Backend):
    kind = "stale"
    # vfs/ asks such a backend for attributes before acting, which answers ESTALE
    keeps_ownership = True

    def __init__(self) -> None:
        self.root = StaleNode()


_backend = _StaleBackend()
STALE = Location(Mount("/", _backend, read_only=False, dev=_STALE_DEV), _backend.root)
