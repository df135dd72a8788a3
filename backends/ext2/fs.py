"""One opened ext2 file system: mount state, the inode cache, file data, and checkpoints.

Crash safety without a journal: between checkpoints the image holds the last
checkpoint plus file data written in place or into blocks that are free on
disk (freed blocks and inodes stay quarantined until the next checkpoint, see
alloc.py). A checkpoint writes bitmaps that only add allocations, then
indirect/directory/xattr blocks, then inodes, then releases the quarantined
bits: a kill between two of these steps leaves differences e2fsck -p fixes.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import logging
import random
import stat
import struct
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

from ..image_file import HostImageFile, ImageFile
from .alloc import Allocator
from .attrs import drop_block
from .bmap import BlockMap
from .dirs import Directory
from .image import BITMAP, META, Image
from .image_lock import Ext2Error, check_no_loop, check_servable, loop_devices_of, read_superblock
from .inode import Inode, check_id
from .layout import (
    GOOD_OLD_FIRST_INO,
    GOOD_OLD_INODE_SIZE,
    GOOD_OLD_REV,
    INCOMPAT_FILETYPE,
    RO_COMPAT_LARGE_FILE,
    STATE_VALID,
    GroupDesc,
)
from .worker import Worker

__all__ = ["CHECKPOINT_SECONDS", "FREE_STEP", "Ext2Error", "FileSystem", "loop_devices_of"]

log = logging.getLogger(__name__)
CHECKPOINT_SECONDS = 2.0  # dirty metadata is written back at most this long after a change
ROOT_INO = 2
_DIRTY_LIMIT = 4096  # dirty inodes + blocks that force a checkpoint at once
_RECENT = 65536  # inodes kept in memory beyond those in use
_DIRS_CACHED = 4096  # directories whose name index is kept
FREE_STEP = 32768  # blocks freed per event-loop turn when a big file goes away


class FileSystem:
    """The shared state of one image: superblock, groups, caches, allocator, block map."""

    def __init__(self, source: str | ImageFile, read_only: bool, force: bool) -> None:
        """Open ``source`` (a host path, or an ImageFile opened for writing unless
        ``read_only``); on an ImageFile of a mount, call this in a thread."""
        if isinstance(source, str):
            try:
                source = HostImageFile(source, not read_only)
            except OSError as exc:
                raise Ext2Error(f"{source}: cannot open the image: {exc.strerror}") from None
        file = source
        self.path, self.read_only = file.name, read_only
        try:
            try:
                file.lock(not read_only)
            except OSError as exc:
                raise Ext2Error(f"{self.path}: {exc.strerror}") from None
            if isinstance(file, HostImageFile):
                check_no_loop(file.fd, self.path, read_only)
            self.sb = read_superblock(file, self.path)
            check_servable(self.sb, self.path, read_only, force)
        except BaseException:
            file.close()
            raise
        sb = self.sb
        self.block_size = bs = sb.block_size
        self.inode_size = sb.inode_size
        self.ipg = sb.get("inodes_per_group")
        self.image = Image(file, bs, sb.blocks_count)
        self.worker = Worker(self.path, file.host)
        self._schedule_asked = False  # an operation in the thread asked the loop for a timer
        self.groups = self._read_groups()
        self.alloc = Allocator(self.image, sb, self.groups)
        self.bmap = BlockMap(self.image, self.alloc)
        self.filetype = sb.has(incompat=INCOMPAT_FILETYPE)
        # Inodes in use anywhere (a Node, a Directory, the dirty set) stay in ``inodes``;
        # ``recent`` keeps the last _RECENT more; the rest are read again when needed.
        self.inodes: weakref.WeakValueDictionary[int, Inode] = weakref.WeakValueDictionary()
        self.recent: OrderedDict[int, Inode] = OrderedDict()
        self.dirty_inodes: dict[int, Inode] = {}
        self.dirs: OrderedDict[int, Directory] = OrderedDict()
        self.want_extra = struct.unpack_from("<H", sb.raw, 350)[0] or 32
        self.timer: asyncio.TimerHandle | None = None
        self.soon = False  # a checkpoint is queued for the next turn of the event loop
        self.releasing: dict[int, Inode] = {}  # big files being freed in steps
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.failing = False  # the last write-back failed (logged once until one works)
        self.fsync_failed = False  # data may be lost: never mark this image clean
        if not read_only:
            self._mount()
            if file.host:
                # The server may stop without closing its backends: still leave the image
                # clean (an image in a mount needs the event loop, gone by then).
                atexit.register(self.close)

    # --- opening --------------------------------------------------------------

    def _read_groups(self) -> list[GroupDesc]:
        count, size = self.sb.group_count, self.sb.desc_size
        start = (self.sb.get("first_data_block") + 1) * self.block_size
        raw = self.image.pread(start, count * size)
        return [GroupDesc(raw[i * size:(i + 1) * size]) for i in range(count)]

    def _mount(self) -> None:
        """Mark the image in use, as the kernel does at a read-write mount."""
        sb = self.sb
        sb.set("state", sb.get("state") & ~STATE_VALID)
        sb.set("mnt_count", (sb.get("mnt_count") + 1) & 0xFFFF)
        now = int(time.time())
        sb.set("mtime", now)
        sb.set("wtime", now)
        self.image.pwrite(1024, sb.raw)
        self.image.file.fsync()

    # --- inodes ---------------------------------------------------------------

    def _inode_offset(self, ino: int) -> int:
        group, idx = divmod(ino - 1, self.ipg)
        if not 0 < ino <= self.sb.get("inodes_count") or group >= len(self.groups):
            raise OSError(errno.EIO, f"inode number {ino} outside the file system")
        table: int = self.groups[group].inode_table
        return table * self.block_size + idx * self.inode_size

    def inode(self, ino: int) -> Inode:
        node = self.inodes.get(ino)
        if node is None:
            raw = self.image.pread(self._inode_offset(ino), self.inode_size)
            node = self.inodes[ino] = Inode(ino, raw)
        self._remember(node)
        return node

    def _remember(self, inode: Inode) -> None:
        recent = self.recent
        recent[inode.ino] = inode
        recent.move_to_end(inode.ino)
        if len(recent) > _RECENT:
            recent.popitem(last=False)

    def dirty(self, inode: Inode) -> None:
        if self.inodes.get(inode.ino) is inode:
            self.dirty_inodes[inode.ino] = inode
            self.schedule()

    def new_inode(self, parent: Inode, mode: int, uid: int, gid: int) -> Inode:
        check_id(uid)
        check_id(gid)
        ino = self._retry(lambda: self.alloc.alloc_inode(parent.ino, stat.S_ISDIR(mode)))
        raw = bytearray(self.inode_size)
        if self.inode_size > 128:
            struct.pack_into("<H", raw, 128, min(self.want_extra, self.inode_size - 128))
        inode = Inode(ino, raw)
        now = time.time_ns()
        inode.mode, inode.uid, inode.gid, inode.links = mode, uid, gid, 1
        inode.atime_ns = inode.mtime_ns = inode.ctime_ns = inode.crtime_ns = now
        inode.generation = random.getrandbits(32)
        self.inodes[ino] = inode
        self._remember(inode)
        self.dirs.pop(ino, None)
        self.dirty(inode)
        return inode

    def _retry(self, make: Callable[[], int]) -> int:
        """``make()``, once more after a checkpoint if quarantined frees would make room."""
        try:
            return make()
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self.alloc.has_pending():
                raise
        self.checkpoint(durable=False)
        return make()

    def directory(self, inode: Inode) -> Directory:
        d = self.dirs.get(inode.ino)
        if d is None or d.inode is not inode:
            d = self.dirs[inode.ino] = Directory(inode, self.image, self.bmap, self.filetype,
                                                 self.dirty)
        self.dirs.move_to_end(inode.ino)
        return d

    def goal(self, inode: Inode) -> int:
        """Where to look for a new block of ``inode``: the start of its inode's group."""
        return self.alloc.group_first_block((inode.ino - 1) // self.ipg)

    # --- file data --------------------------------------------------------------

    def read(self, inode: Inode, offset: int, size: int,
             nowait: bool = False) -> bytes | memoryview:
        """File data; ``nowait``: BlockingIOError if it is not all in the page cache."""
        end = min(offset + size, inode.size)
        if offset >= end:
            return b""
        bs = self.block_size
        first = offset // bs
        runs = self.bmap.runs(inode, first, (end - 1) // bs - first + 1)
        if len(runs) == 1 and runs[0][0]:  # one contiguous run: one pread, no copy
            return self.image.pread(runs[0][0] * bs + offset % bs, end - offset, nowait)
        buf = bytearray(end - offset)
        view = memoryview(buf)
        pos = first * bs  # file offset where the current run starts
        for phys, n in runs:
            lo, hi = max(pos, offset), min(pos + n * bs, end)
            if phys and hi > lo:
                got = self.image.file.preadinto(view[lo - offset:hi - offset],
                                                phys * bs + lo - pos, nowait)
                if got != hi - lo:
                    raise OSError(errno.EIO, "short read of the image")
            pos += n * bs
        return view

    def write(self, inode: Inode, offset: int, data: memoryview) -> int:
        count = len(data)
        if count == 0:
            return 0
        end = offset + count
        bs = self.block_size
        if end > self.bmap.max_size:
            raise OSError(errno.EFBIG, "file too large for this block size")
        first, last = offset // bs, (end - 1) // bs
        if offset > inode.size:
            self._zero_tail(inode)
        made = self._allocate(inode, first, last - first + 1)
        self._zero_edges(inode, made, offset, end)
        pos = first * bs
        for phys, n in self.bmap.runs(inode, first, last - first + 1):
            lo, hi = max(pos, offset), min(pos + n * bs, end)
            self.image.file.pwrite(phys * bs + lo - pos, data[lo - offset:hi - offset])
            pos += n * bs
        if end > inode.size:
            inode.size = end
            self._note_large(end)
        inode.mtime_ns = inode.ctime_ns = time.time_ns()
        self.dirty(inode)
        return count

    def _allocate(self, inode: Inode, first: int, count: int) -> list[tuple[int, int]]:
        """Map blocks [first, first+count); on ENOSPC undo every block this call mapped."""
        for attempt in (0, 1):
            made: list[tuple[int, int]] = []
            try:
                self.bmap.ensure(inode, first, count, self._goal_for(inode, first), made)
                return made
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                keep = -(-inode.size // self.block_size)
                for lblk, n in made:  # holes inside the file that this call filled
                    for i in range(lblk, min(lblk + n, keep)):
                        self.bmap.unmap(inode, i)
                self.bmap.truncate(inode, keep)
                self.dirty(inode)
                if attempt or not self.alloc.has_pending():
                    raise
                self.checkpoint(durable=False)  # quarantined frees become usable
        raise AssertionError("unreachable")

    def _goal_for(self, inode: Inode, lblk: int) -> int:
        if lblk:
            before = self.bmap.lookup(inode, lblk - 1, 1)[0]
            if before:
                return before + 1
        return self.goal(inode)

    def _zero_edges(self, inode: Inode, made: list[tuple[int, int]], offset: int,
                    end: int) -> None:
        """Clear the parts of newly mapped edge blocks that this write does not cover."""
        bs = self.block_size
        fresh = set()
        for lblk, n in made:
            if lblk <= offset // bs < lblk + n:
                fresh.add(offset // bs)
            if lblk <= (end - 1) // bs < lblk + n:
                fresh.add((end - 1) // bs)
        for lblk in fresh:
            phys = self.bmap.lookup(inode, lblk, 1)[0]
            self.image.pwrite(phys * bs, bytes(bs))

    def _zero_tail(self, inode: Inode) -> None:
        """Clear the bytes past EOF in the last block, before the file grows over them."""
        bs = self.block_size
        tail = inode.size % bs
        if tail:
            phys = self.bmap.lookup(inode, inode.size // bs, 1)[0]
            if phys:
                self.image.pwrite(phys * bs + tail, bytes(bs - tail))

    def _note_large(self, size: int) -> None:
        sb = self.sb
        if size < 2**31 or sb.has(ro_compat=RO_COMPAT_LARGE_FILE):
            return
        if sb.get("rev_level") == GOOD_OLD_REV:
            # Revision 0 has no feature flags: move to revision 1 first, with the
            # values revision 0 implies, as the kernel's ext2_update_dynamic_rev does.
            log.warning("ext2 %s: updating to revision 1 for a file of 2 GiB or more",
                        self.path)
            sb.set("first_ino_raw", GOOD_OLD_FIRST_INO)
            sb.set("inode_size_raw", GOOD_OLD_INODE_SIZE)
            sb.set("rev_level", 1)
        sb.set("feature_ro_compat", sb.get("feature_ro_compat") | RO_COMPAT_LARGE_FILE)

    def truncate(self, inode: Inode, size: int) -> None:
        bs = self.block_size
        if size > self.bmap.max_size:
            raise OSError(errno.EFBIG, "file too large for this block size")
        if size < inode.size:
            self.bmap.truncate(inode, -(-size // bs))
            inode.size = size
            self._zero_tail(inode)
        elif size > inode.size:
            self._zero_tail(inode)
            self._note_large(size)
        inode.size = size
        inode.mtime_ns = inode.ctime_ns = time.time_ns()
        self.dirty(inode)

    def release(self, inode: Inode) -> None:
        """Free an inode with no links and no users: its blocks, xattr block, number."""
        inode.dead = True
        if self.has_blocks(inode):
            self.bmap.truncate(inode, 0)
        drop_block(self, inode)
        inode.size = 0
        inode.dtime = int(time.time())
        self.dirty(inode)
        self.alloc.free_inode(inode.ino, inode.is_dir)
        self.dirs.pop(inode.ino, None)

    def release_soon(self, inode: Inode) -> None:
        """``release``, in bounded steps on the event loop when the file is big."""
        inode.dead = True
        if inode.blocks // (self.block_size // 512) <= FREE_STEP:
            self.release(inode)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.release(inode)
            return
        self.releasing[inode.ino] = inode
        task = loop.create_task(self._release_in_steps(inode))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _release_in_steps(self, inode: Inode) -> None:
        # each step leaves a consistent file; other connections come in between
        while await self.worker.call(self._release_step, inode):
            await asyncio.sleep(0)

    def _release_step(self, inode: Inode) -> bool:
        """One step of freeing a big file, decided where it runs (close, in the same
        thread, may have freed it already); False once there is no more to do."""
        if self.closed or inode.ino not in self.releasing:
            return False
        step = FREE_STEP * self.block_size
        if inode.size > step:
            self.truncate(inode, inode.size - step)
            return True
        del self.releasing[inode.ino]
        self.release(inode)
        return False

    def has_blocks(self, inode: Inode) -> bool:
        """Whether i_block maps blocks (not a fast symlink's text or a device number)."""
        mode = inode.mode
        return stat.S_ISREG(mode) or stat.S_ISDIR(mode) \
            or (stat.S_ISLNK(mode) and not inode.is_fast_symlink(self.block_size))

    # --- checkpoints ----------------------------------------------------------

    def schedule(self) -> None:
        """Arrange a checkpoint: soon, or at once after this call when much is dirty.

        Never now: the caller may be half way through an operation, and a
        checkpoint must only see whole ones (they never await half way). Called
        in the image's thread, it asks the event loop to do it.
        """
        if self.worker.in_thread():
            loop = self.worker.loop
            if not self._schedule_asked and loop is not None and not self.closed:
                self._schedule_asked = True
                loop.call_soon_threadsafe(self._schedule_from_thread)
            return
        # While write-back fails, only the timer retries: not once per operation.
        over = not self.failing \
            and len(self.dirty_inodes) + len(self.image.dirty) > _DIRTY_LIMIT
        if self.closed or (self.timer is not None and not (over and not self.soon)):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if over and not self.soon:
            self.soon = True
            loop.call_soon(self._timed_checkpoint)
        if self.timer is None:
            self.timer = loop.call_later(CHECKPOINT_SECONDS, self._timed_checkpoint)

    def _schedule_from_thread(self) -> None:
        self._schedule_asked = False
        self.schedule()

    def _timed_checkpoint(self) -> asyncio.Task[None] | None:
        """The timer's callback: the write-back, in the image's thread (the task)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.soon = None, False
        if self.closed:
            return None
        task = asyncio.get_running_loop().create_task(self._write_back_in_thread())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait for the write-backs and step-wise frees started so far."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def _write_back_in_thread(self) -> None:
        try:
            await self.worker.offload(self.checkpoint, False)
        except Exception as exc:  # logged by checkpoint; nothing may reach the event loop
            log.debug("ext2 %s: write-back retried in %s s: %s", self.path,
                      CHECKPOINT_SECONDS, exc)
            self.schedule()  # everything is still dirty: try again later

    def _write_groups_and_super(self) -> None:
        if self.alloc.gd_dirty:
            table = b"".join(gd.pack() for gd in self.groups)
            self.image.pwrite((self.sb.get("first_data_block") + 1) * self.block_size, table)
            self.alloc.gd_dirty = False
        self.image.pwrite(1024, self.sb.raw)

    def checkpoint(self, durable: bool) -> None:
        """Write all dirty metadata in crash-safe order; fsync the image if ``durable``.

        All or nothing: any failure (an I/O error, an inode that cannot be
        encoded) leaves everything that was dirty dirty, so each later
        checkpoint, and each fsync, fails again until the fault is gone: an
        fsync never answers success over data it did not write. The error is
        logged once until a checkpoint succeeds; a non-OSError is raised as EIO.
        """
        if self.read_only:
            return
        saved = self.image.dirty_state(), dict(self.dirty_inodes), self.alloc.gd_dirty
        try:
            self._write_back(durable)
        except Exception as exc:
            blocks, inodes, gd_dirty = saved
            self.image.keep_dirty(blocks)
            self.dirty_inodes = {**inodes, **self.dirty_inodes}
            self.alloc.gd_dirty = self.alloc.gd_dirty or gd_dirty
            self._note_failure(exc)
            if isinstance(exc, OSError):
                raise
            raise OSError(errno.EIO, f"write-back of the image failed: {exc!r}") from exc
        if self.failing:
            self.failing = False
            log.warning("ext2 %s: write-back works again", self.path)

    def _note_failure(self, exc: Exception) -> None:
        if self.failing:
            log.debug("ext2 %s: write-back failed again: %s", self.path, exc)
            return
        self.failing = True
        # Not an OSError: a bug, whose traceback is worth having once.
        log.error("ext2 %s: write-back failed; the changes stay in memory and every "
                  "fsync fails until a retry works: %s", self.path, exc,
                  exc_info=None if isinstance(exc, OSError) else exc)

    def _write_back(self, durable: bool) -> None:
        """The writes of ``checkpoint``, in its order; dirty marks are not put back here.

        The order makes every prefix of these writes one e2fsck -p repairs:
        allocations in the bitmaps; inodes that lost links (a name still aimed at
        them reads as deleted); blocks that gained directory entries before those
        that lost some, and blocks that did both before those that only lost
        (a moved name is briefly in both places, never in none);
        the other inodes (a new name aimed at an unwritten inode reads as
        deleted); and last the frees of blocks and inodes no longer used.
        A directory moving to another block cannot be made safe this way (see
        tests/backends/test_ext2_crash_points.py): its three blocks are at least
        written back to back, to keep the window to two pwrite calls.
        """
        image = self.image
        inodes, self.dirty_inodes = self.dirty_inodes, {}
        dirty = sorted(inodes)
        # Encoded before anything is written: an inode that cannot be packed
        # fails the checkpoint with the image untouched.
        packed = {ino: inodes[ino].pack() for ino in dirty}
        self.sb.set("wtime", int(time.time()))
        image.write_dirty(BITMAP)
        self._write_groups_and_super()
        early = [ino for ino in dirty if inodes[ino].links < inodes[ino].disk_links]
        self._write_inodes(early, inodes, packed)
        image.write_dirty(META, removals=False)
        image.write_dirty(META, removals=True, additions=True)
        image.write_moves()
        image.write_dirty(META, removals=True)
        done = set(early)
        self._write_inodes([ino for ino in dirty if ino not in done], inodes, packed)
        if self.alloc.has_pending():
            self.alloc.release_pending()
            image.write_dirty(BITMAP)
            self._write_groups_and_super()
        if durable:
            try:
                image.file.fsync()
            except OSError:
                # Linux may drop the pages a failed fsync could not write (file data
                # too, which is not kept here to write again): the image needs e2fsck.
                self.fsync_failed = True
                raise
        image.trim()  # only now: a failure above needs every dirty block still cached
        while len(self.dirs) > _DIRS_CACHED:  # between operations: nobody holds one now
            self.dirs.popitem(last=False)

    def _write_inodes(self, inos: list[int], inodes: dict[int, Inode],
                      packed: dict[int, bytes]) -> None:
        """Write inodes (sorted numbers), one pwrite per run of neighbours in a table."""
        i = 0
        while i < len(inos):
            j = i + 1
            while j < len(inos) and inos[j] == inos[j - 1] + 1 \
                    and (inos[j] - 1) % self.ipg and j - i < 1024:
                j += 1
            self.image.pwrite(self._inode_offset(inos[i]),
                              b"".join(packed[ino] for ino in inos[i:j]))
            for ino in inos[i:j]:
                inodes[ino].disk_links = inodes[ino].links
            i = j

    def close(self) -> None:
        """Write everything back, mark the file system clean, unlock and close the image."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)  # (a no-op for an image in a mount: never registered)
        for inode in self.releasing.values():  # a step-wise free was cut short
            self.release(inode)
        self.releasing.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            if not self.read_only:
                self._mark_clean()
        finally:
            self.image.file.close()
            self.worker.shutdown()

    def _mark_clean(self) -> None:
        """The last checkpoint, durable, and only then the clean mark (as the kernel's
        ext2_put_super): after any failure the image stays marked not clean."""
        try:
            self.checkpoint(durable=True)
        except OSError as exc:
            log.error("ext2 %s: closed with changes not written back (%s); the image "
                      "stays marked not clean: run e2fsck -f on it", self.path, exc.strerror)
            return
        if self.fsync_failed:
            log.error("ext2 %s: an fsync of the image failed earlier and data may be "
                      "lost; the image stays marked not clean: run e2fsck -f on it", self.path)
            return
        try:
            self.sb.set("state", self.sb.get("state") | STATE_VALID)
            self.image.pwrite(1024, self.sb.raw)
            self.image.file.fsync()
        except OSError as exc:
            log.error("ext2 %s: could not mark the image clean: %s", self.path, exc.strerror)
