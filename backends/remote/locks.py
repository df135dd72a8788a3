"""Byte-range locks on imported files, forwarded to the back server (Tlock/Tgetlock).

The back server keeps the locks, so a client of this server and a client of the
back server conflict. It sees one connection (ours); each owner of ours, a client
connection's (client_id, proc_id), goes to it as its own client_id
(``ninep-import#CONN#CLIENT_ID``) and proc_id, so the owners of two client
connections conflict there as they would here. The locks an owner took through a
handle are released when the handle closes (the fid's clunk: the server clunks every
fid of a connection that closes), since the back server would keep them as long as
our connection to it lives.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging

from ninep.clients import Fid
from ninep.vfs.request import cancellable
from ninep.wire.constants import LOCK_BLOCKED, LOCK_FLAG_BLOCK, LOCK_SUCCESS, LOCK_UNLCK
from ninep.wire.messages import Message, Rgetlock, Rlock, Tgetlock, Tlock

__all__ = ["OWNER_PREFIX", "HandleLocks", "back_owner", "front_client_id"]

log = logging.getLogger(__name__)

OWNER_PREFIX = "ninep-import#"
Owner = tuple[int, str, int]  # vfs/locks.py's: (connection id, client_id, proc_id)
_CLIENT_ID_MAX = 255
_POLL_FIRST, _POLL_MAX = 0.02, 1.0  # a back server that answers BLOCKED (diod) is polled


def back_owner(owner: Owner) -> tuple[str, int]:
    """The client_id and proc_id the back server sees for one of our owners. A client_id
    longer than a host name (Linux sends utsname's nodename, at most 64 bytes) goes as its
    SHA-256: the prefixed string must still fit a 9P string and the back server's limits."""
    conn_id, client_id, proc_id = owner
    if len(client_id.encode("utf-8", "surrogateescape")) > _CLIENT_ID_MAX:
        client_id = hashlib.sha256(client_id.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{OWNER_PREFIX}{conn_id}#{client_id}", proc_id


def front_client_id(client_id: str) -> str:
    """A holder's client_id as our clients should see it: ours without the prefix."""
    if client_id.startswith(OWNER_PREFIX):
        return client_id[len(OWNER_PREFIX):].partition("#")[2]
    return client_id


class HandleLocks:
    """The owners that locked through one handle, released at its close."""

    def __init__(self) -> None:
        self.owners: set[tuple[str, int]] = set()

    async def lock(self, fid: Fid, lock_type: int, flags: int, start: int, length: int,
                   owner: Owner) -> int:
        """Tlock on the back server; a blocking one waits there (or is polled) and is
        cancelled by a Tflush of ours, which flushes it there in turn."""
        client_id, proc_id = back_owner(owner)
        if lock_type != LOCK_UNLCK:
            self.owners.add((client_id, proc_id))
        block = bool(flags & LOCK_FLAG_BLOCK) and lock_type != LOCK_UNLCK
        msg = Tlock(fid.fid, lock_type, flags if block else 0, start, length, proc_id,
                    client_id)
        if not block:
            return (await fid.client.call(msg, Rlock)).status
        poll = _POLL_FIRST
        while True:
            status = await cancellable(self._blocking(fid, msg))
            if status != LOCK_BLOCKED:
                return int(status)
            await cancellable(asyncio.sleep(poll))
            poll = min(poll * 2, _POLL_MAX)

    async def _blocking(self, fid: Fid, msg: Tlock) -> int:
        def abandon(late: Message | None) -> None:
            # granted after we gave up (the Rlock came before the Rflush): give it back
            if isinstance(late, Rlock) and late.status == LOCK_SUCCESS:
                fid.client.spawn(_unlock(fid, msg.start, msg.length, msg.proc_id,
                                         msg.client_id))

        reply = await fid.client.rpc(msg, on_abandon=abandon)
        if not isinstance(reply, Rlock):
            raise OSError(errno.EIO, f"Tlock answered by {type(reply).__name__}")
        return reply.status

    async def getlock(self, fid: Fid, lock_type: int, start: int, length: int,
                      owner: Owner) -> tuple[int, int, int, int, str]:
        """Tgetlock on the back server: (type, start, length, proc_id, client_id)."""
        client_id, proc_id = back_owner(owner)
        reply = await fid.client.call(Tgetlock(fid.fid, lock_type, start, length, proc_id,
                                               client_id), Rgetlock)
        return (reply.lock_type, reply.start, reply.length, reply.proc_id,
                front_client_id(reply.client_id))

    async def release_all(self, fid: Fid) -> None:
        """Unlock every owner's whole file (the handle is closing)."""
        owners, self.owners = self.owners, set()
        await asyncio.gather(*(_unlock(fid, 0, 0, proc_id, client_id)
                               for client_id, proc_id in owners))


async def _unlock(fid: Fid, start: int, length: int, proc_id: int, client_id: str) -> None:
    try:
        await fid.client.call(Tlock(fid.fid, LOCK_UNLCK, 0, start, length, proc_id, client_id),
                              Rlock)
    except (OSError, ConnectionError) as exc:  # gone with the connection, or the file
        log.debug("unlock on the back server failed: %s", exc)
