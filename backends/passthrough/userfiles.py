"""Files a user opened under its own identity (fsident.py): written under it, and what
an ftruncate through them may do that a truncate by path may not."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .fsident import HostCred, stepped
from .handle import FileHandle

if TYPE_CHECKING:
    from .backend import PassthroughBackend
    from .node import PassthroughNode

__all__ = ["OpenerFileHandle", "truncate_through_writer"]


class OpenerFileHandle(FileHandle):
    """A file opened under a user's identity writes under it too: a write by someone
    without CAP_FSETID clears the setuid bit (Linux's file_remove_privs).

    Open for writing, it is listed on its node (``writers``), so that a Tsetattr(size)
    of that user truncates through it as ftruncate(2) does, which checks no permission:
    a file made 0444 and opened for writing can still be truncated by its writer, where
    a truncate by path under the user's identity would be EACCES.
    """

    def __init__(self, fs: PassthroughBackend, node: PassthroughNode, fd: int,
                 accmode: int, seekable: bool, cred: HostCred) -> None:
        super().__init__(fs, node, fd, accmode, seekable)
        self.cred = cred
        if self.writable and seekable:
            if node.writers is None:
                node.writers = []
            node.writers.append(self)

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        return await stepped(super().write(offset, data), self.cred)

    async def close(self) -> None:
        writers = self.node.writers
        if writers is not None and self in writers:
            writers.remove(self)
        await super().close()

    async def ftruncate(self, size: int) -> None:
        # through the handle's own thread call, so its descriptor stays open until done
        await self._in_thread(os.ftruncate, self.fd, size)


async def truncate_through_writer(node: PassthroughNode, cred: HostCred | None,
                                  size: int) -> bool:
    """ftruncate ``node`` to ``size`` through a descriptor its user ``cred`` holds open
    for writing, if there is one (True); False: truncate by path."""
    if cred is None or not node.writers:
        return False
    for handle in node.writers:
        if handle.cred.uid == cred.uid and handle.fd >= 0:
            await handle.ftruncate(size)
            return True
    return False
