"""The overlay backend instance: its layers, inode numbering, node making and copy-up."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ninep.vfs.node import Attr, Backend, Handle, Node, OpenFlags, SetAttr

from .markers import (
    WORK_DIR,
    is_opaque,
    is_private_xattr,
    read_origin,
    walk_or_none,
    write_origin,
)
from .nodes import OverlayDir, OverlayNode

__all__ = ["COPY_CHUNK", "OverlayBackend"]

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20  # copy-up moves this much, then lets other requests run
_ZEROS = memoryview(bytes(COPY_CHUNK))
_DIRECT = 1 << 46  # layer inode numbers below this are used as they are
_UPPER = 1 << 47  # the bit that keeps upper-only inode numbers apart from lower ones


async def _keep_times(directory: Node, before: Attr) -> None:
    """A copy-up is no change the client made: put the parent's times back, as
    overlayfs does (ovl_set_timestamps after ovl_copy_up_one)."""
    await directory.setattr(SetAttr(atime_ns=before.atime_ns, mtime_ns=before.mtime_ns))


class OverlayBackend(Backend):
    """A writable ``upper`` backend over a read-only ``lower`` one.

    ``lower`` is only ever read, so one lower instance may serve many overlays
    (``owns_lower=False``: close() leaves it open for its other users;
    ``release_lower``: what close() calls instead, e.g. a shared lower's release).
    """

    kind = "overlay"
    keeps_ownership = True

    def __init__(self, lower: Backend, upper: Backend, *, owns_lower: bool = True,
                 release_lower: Callable[[], Awaitable[None]] | None = None) -> None:
        self.lower, self.upper, self.owns_lower = lower, upper, owns_lower
        self._release_lower = release_lower  # called at close (a shared lower's refcount)
        self.lock = asyncio.Lock()  # held while the upper layer's entries change, never long
        self.origins: dict[int, int] = {}  # upper ino -> overlay ino of copied-up files
        # True when every origin in the upper layer was written by this instance (it
        # started empty), so ``origins`` is complete and no xattr need be read.
        self.origins_complete = False
        self._wide: dict[tuple[int, int], int] = {}  # (layer, ino >= _DIRECT) -> overlay ino
        self._wide_taken: set[tuple[int, int]] = set()
        self._work: Node | None = None
        self._work_names = itertools.count(1)
        peek = lower.root.peek_attr()  # start() numbers the root when this cannot
        self.root: OverlayDir = OverlayDir(self, None, "", upper.root, lower.root,
                                           self.lower_ino(peek.ino if peek else 0))

    async def start(self) -> None:
        """Number the root and clear copy-ups a crash left half done in the work directory.

        The factory calls it; whoever builds an OverlayBackend directly must too.
        """
        self.root.ino = self.lower_ino((await self.lower.root.getattr()).ino)
        first = await self.upper.root.readdir(0, 2)
        self.origins_complete = all(e.name == WORK_DIR for e in first)
        if not first:
            # A fresh upper root takes the lower root's owner, mode and times, so the
            # overlay's / looks like the image's (a user who owns it may write there).
            await self._copy_meta(self.lower.root, self.upper.root)
        work = await walk_or_none(self.upper.root, WORK_DIR)
        if work is None:
            return
        self._work = work
        cookie = 0
        while entries := await work.readdir(cookie, 256):
            for entry in entries:
                await work.unlink(entry.name, entry.dtype == 4)
            cookie = entries[-1].cookie

    @asynccontextmanager
    async def changing(self, *dirs: OverlayDir) -> AsyncIterator[None]:
        """Hold the lock while the entries of ``dirs`` change in the upper layer.

        Each directory's version moves at the start and at the end, so a lookup
        that read the layers meanwhile knows its answer may be stale.
        """
        async with self.lock:
            for d in dirs:
                d.version += 1
            try:
                yield
            finally:
                for d in dirs:
                    d.version += 1

    async def close(self) -> None:
        try:
            await self.upper.close()
        finally:
            if self._release_lower is not None:
                await self._release_lower()
            elif self.owns_lower:
                await self.lower.close()

    # --- inode numbers -----------------------------------------------------

    def lower_ino(self, ino: int) -> int:
        """A lower file's overlay inode number; a copy-up keeps it (qid.path stays)."""
        return ino if 0 < ino < _DIRECT else self._widen(0, ino)

    def upper_ino(self, ino: int) -> int:
        """An upper-only file's number: bit 47 set, so it never meets a lower one."""
        return (_UPPER | ino) if 0 < ino < _DIRECT else self._widen(1, ino)

    def _widen(self, layer: int, ino: int) -> int:
        """A number for an inode too wide for 46 bits: a hash of it, so it stays the same
        across restarts (origins are stored), probing on past the rare collision."""
        key = (layer, ino)
        mapped = self._wide.get(key)
        if mapped is None:
            digest = hashlib.blake2b(ino.to_bytes(16, "little", signed=True), digest_size=8)
            slot = int.from_bytes(digest.digest(), "little") % (_DIRECT - 1) + 1
            while (layer, slot) in self._wide_taken:
                slot = slot % (_DIRECT - 1) + 1
            self._wide_taken.add((layer, slot))
            mapped = self._wide[key] = (layer * _UPPER) | _DIRECT | slot
        return mapped

    # --- nodes ---------------------------------------------------------------

    async def make_node(self, parent: OverlayDir, name: str, upper: Node | None,
                        lower: Node | None) -> OverlayNode:
        """The overlay node for what a lookup found in each layer (whiteouts already excluded)."""
        if upper is None:
            assert lower is not None
            lattr = await lower.getattr()
            cls = OverlayDir if stat.S_ISDIR(lattr.mode) else OverlayNode
            return cls(self, parent, name, None, lower, self.lower_ino(lattr.ino))
        uattr = await upper.getattr()
        if stat.S_ISDIR(uattr.mode):
            if lower is not None:
                lattr = await lower.getattr()
                if stat.S_ISDIR(lattr.mode) and not await is_opaque(upper):
                    return OverlayDir(self, parent, name, upper, lower, self.lower_ino(lattr.ino))
            return OverlayDir(self, parent, name, upper, None, self.upper_ino(uattr.ino))
        origin = self.origins.get(uattr.ino)
        if origin is None and not self.origins_complete:
            origin = await read_origin(upper)
        ino = self.upper_ino(uattr.ino) if origin is None else origin
        return OverlayNode(self, parent, name, upper, None, ino)

    async def new_upper_node(self, parent: OverlayDir, name: str, upper: Node) -> OverlayNode:
        """The node for a file just made in the upper layer (no origin, never merged)."""
        uattr = await upper.getattr()
        self.origins.pop(uattr.ino, None)  # a host may reuse the number of a deleted file
        ino = self.upper_ino(uattr.ino)
        if stat.S_ISDIR(uattr.mode):
            return OverlayDir(self, parent, name, upper, None, ino)
        return OverlayNode(self, parent, name, upper, None, ino)

    def forget_origin(self, attr_ino: int, nlink: int) -> None:
        """The last name of an upper file is going: its number may come back for another."""
        if nlink <= 1:
            self.origins.pop(attr_ino, None)

    # --- copy-up -------------------------------------------------------------

    async def copy_up(self, node: OverlayNode, with_data: bool = True) -> None:
        """Give ``node`` an upper copy (its parents first), once, whoever asks meanwhile."""
        while node.upper is None:
            if node.copying is not None:
                await node.copying
                continue
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            node.copying = done
            try:
                await self._copy_up_once(node, with_data)
            finally:
                node.copying = None
                done.set_result(None)

    async def _copy_up_once(self, node: OverlayNode, with_data: bool) -> None:
        parent, lower = node.parent, node.lower
        assert parent is not None and lower is not None  # the root always has an upper
        await self.copy_up(parent)
        attr = await lower.getattr()
        if stat.S_ISREG(attr.mode):
            await self._copy_file_up(node, lower, with_data)
            return
        async with self.changing(parent):
            if node.removed or parent.upper is None:
                raise OSError(errno.ENOENT, "file was removed", node.name)
            where, name = parent.upper, node.name
            times = await where.getattr()
            if stat.S_ISDIR(attr.mode):
                upper = await where.mkdir(name, attr.mode & 0o7777, attr.uid, attr.gid)
            elif stat.S_ISLNK(attr.mode):
                upper = await where.symlink(name, await lower.readlink(), attr.uid, attr.gid)
            else:
                upper = await where.mknod(name, attr.mode, attr.rdev, attr.uid, attr.gid)
            await self._copy_meta(lower, upper)
            if not stat.S_ISDIR(attr.mode):
                await self._record_origin(upper, node.ino)
            node.upper = upper
            await _keep_times(where, times)

    async def _copy_file_up(self, node: OverlayNode, lower: Node, with_data: bool) -> None:
        """Assemble the copy in the work directory, then move it into place (as overlayfs
        does): no half-copied file is ever visible under the real name, even after a crash."""
        work = await self._work_dir()
        temp = f"copyup-{next(self._work_names)}"
        upper, handle = await work.create(temp, OpenFlags.WRITE, 0o600, 0, 0)
        try:
            try:
                if with_data:
                    await self._copy_data(lower, handle)
            finally:
                await handle.close()
            await self._copy_meta(lower, upper)
            await self._record_origin(upper, node.ino)
            parent = node.parent
            assert parent is not None
            async with self.changing(parent):
                if node.removed or node.parent is not parent or parent.upper is None:
                    raise OSError(errno.ENOENT, "file was removed", node.name)
                times = await parent.upper.getattr()
                await work.rename(temp, parent.upper, node.name)
                node.upper = upper
                await _keep_times(parent.upper, times)
        except BaseException:
            if node.upper is not upper:
                await work.unlink(temp, False)
            raise

    async def _copy_data(self, lower: Node, out: Handle) -> None:
        size = (await lower.getattr()).size
        source = await lower.open(OpenFlags.READ)
        try:
            offset = 0
            while offset < size:
                chunk = await source.read(offset, COPY_CHUNK)
                if not chunk:
                    break
                if chunk != _ZEROS[:len(chunk)]:  # leave holes as holes
                    await out.write(offset, chunk)
                offset += len(chunk)
                await asyncio.sleep(0)  # a big file must not hold the loop
        finally:
            await source.close()

    async def _copy_meta(self, lower: Node, upper: Node) -> None:
        """Size (for trailing holes), owner, mode, times and xattrs, as overlayfs copies them."""
        attr = await lower.getattr()
        is_link = stat.S_ISLNK(attr.mode)
        if stat.S_ISREG(attr.mode) and (await upper.getattr()).size < attr.size:
            await upper.setattr(SetAttr(size=attr.size))
        try:
            await upper.setattr(SetAttr(uid=attr.uid, gid=attr.gid))
        except PermissionError:
            log.debug("overlay copy-up: cannot give the copy owner %d:%d", attr.uid, attr.gid)
        mode = None if is_link else attr.mode & 0o7777  # after chown, which clears setuid
        try:
            await upper.setattr(SetAttr(mode=mode, atime_ns=attr.atime_ns,
                                        mtime_ns=attr.mtime_ns))
        except OSError:
            if not is_link:  # a symlink's times are a nicety some hosts refuse
                raise
        for name in await lower.xattr_list():
            if is_private_xattr(name):
                continue
            try:
                await upper.xattr_set(name, await lower.xattr_get(name), 0)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EPERM, errno.ENODATA):
                    raise

    async def _record_origin(self, upper: Node, ino: int) -> None:
        await write_origin(upper, ino)  # for a restart; memory serves this instance
        self.origins[(await upper.getattr()).ino] = ino

    async def _work_dir(self) -> Node:
        if self._work is None:
            root = self.upper.root
            try:
                self._work = await root.mkdir(WORK_DIR, 0o700, 0, 0)
            except FileExistsError:
                self._work = await root.walk(WORK_DIR)
        return self._work

    def work_dir_exists(self) -> bool:
        return self._work is not None
