"""Whether a directory a fid holds is still below the export, checked before it is used.

A fid holds a directory by descriptor, so a host process that moves that
directory out of the export would otherwise let a client create, open and list
names outside it. A path-based server (or Linux's own lookup from the export)
would answer ENOENT there; so does this backend.

The proof is the recorded chain of names: each node's name in its recorded
parent still leads to that node (an fstatat per level, up to the root). If the
host renamed something inside the export, the chain no longer matches and the
slower sound check decides: climbing with '..' descriptor-relatively until
the export root's (st_dev, st_ino) is met, or the host's root is.

A proof is remembered until the next *epoch*: one inotify instance watches
every directory node for IN_MOVE_SELF, IN_DELETE_SELF and IN_ATTRIB, and the
epoch goes up whenever such an event (or a queue overflow) is read. The kernel
queues the event inside rename(2) (chmod(2), setxattr(2)...) itself, so
checking for pending events with a poll(0) before trusting a proof is sound,
and a walk of one name pays that one syscall instead of a climb. A chain
holding a node without a watch (inotify unavailable or out of watches) is
proven again at every use. IN_ATTRIB is there for fsident.SearchGrants: which
users the kernel let search a directory holds until its mode, owner or ACL
change.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
from typing import TYPE_CHECKING

from .fsident import as_server

if TYPE_CHECKING:
    from .node import PassthroughNode

__all__ = ["MoveWatch", "check_contained", "move_watch", "watched"]

log = logging.getLogger(__name__)

_IN_ATTRIB, _IN_MOVE_SELF, _IN_DELETE_SELF = 0x4, 0x800, 0x400
_IN_UNMOUNT, _IN_Q_OVERFLOW, _IN_IGNORED = 0x2000, 0x4000, 0x8000
_IN_ONLYDIR = 0x01000000
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (+ name)
_CLIMB_LIMIT = 4096  # more levels than PATH_MAX allows names


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - no C library to load
        return None


_libc = _load_libc()


class MoveWatch:
    """One process's inotify instance, and the move epoch its events advance."""

    def __init__(self, first_epoch: int) -> None:
        self.epoch = first_epoch
        self._refs: dict[int, int] = {}  # watch descriptor -> nodes using it
        self.fd = -1
        if _libc is not None:
            self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            log.info("no inotify instance (%s): held directories are proven at every use",
                     os.strerror(ctypes.get_errno()))
            return
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def watch(self, fd: int) -> int:
        """Watch the directory open as ``fd``; its watch descriptor, or -1."""
        if self.fd < 0 or _libc is None:
            return -1
        with as_server():  # a watch needs read access, which the requesting user may lack
            wd: int = _libc.inotify_add_watch(
                self.fd, f"/proc/self/fd/{fd}".encode(),
                _IN_ATTRIB | _IN_MOVE_SELF | _IN_DELETE_SELF | _IN_ONLYDIR)
        if wd < 0:
            log.debug("inotify_add_watch: %s", os.strerror(ctypes.get_errno()))
            return -1
        self._refs[wd] = self._refs.get(wd, 0) + 1  # one watch per inode, shared
        return wd

    def unwatch(self, wd: int) -> None:
        left = self._refs.get(wd, 0) - 1
        if left > 0:
            self._refs[wd] = left
        elif left == 0:
            del self._refs[wd]
            if _libc is not None:
                _libc.inotify_rm_watch(self.fd, wd)

    def watching(self, wd: int) -> bool:
        return wd in self._refs

    def current(self) -> int:
        """The move epoch, after reading whatever events are queued (one poll(0))."""
        if self.fd >= 0 and self._poll.poll(0):
            self._drain()
        return self.epoch

    def _drain(self) -> None:
        moved = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & _IN_IGNORED and wd in self._refs:
                    del self._refs[wd]  # the kernel dropped it: its nodes are unwatched now
                    moved = True
                if mask & (_IN_ATTRIB | _IN_MOVE_SELF | _IN_DELETE_SELF | _IN_UNMOUNT
                           | _IN_Q_OVERFLOW):
                    moved = True
        if moved:
            self.epoch += 1


_watch: MoveWatch | None = None


def move_watch() -> MoveWatch:
    """This process's MoveWatch."""
    global _watch
    if _watch is None:
        _watch = MoveWatch(0)
    return _watch


def _forget_after_fork() -> None:
    # inotify queues are shared across fork: a worker draining the parent's would hide
    # events from it. Its own instance starts at a later epoch, so no old proof holds.
    global _watch
    old = _watch
    if old is not None:
        if old.fd >= 0:
            os.close(old.fd)
        _watch = MoveWatch(old.epoch + 1)


os.register_at_fork(after_in_child=_forget_after_fork)


def check_contained(node: PassthroughNode) -> int:
    """ENOENT unless the directory ``node`` is still below its export's root; else the
    epoch, read before the proof (what fsident.SearchGrants remembers its grants by)."""
    watch = _watch or move_watch()
    if watch.fd >= 0 and watch._poll.poll(0):  # watch.current(), one call less per walk
        watch._drain()
    epoch = watch.epoch  # read before any proof: a move during it shows next time
    if node.proven == epoch or node.parent is None:
        return epoch
    chain: list[PassthroughNode] = []
    cacheable = True
    link: PassthroughNode | None = node
    while link is not None and link.parent is not None and link.proven != epoch:
        if not _still_named(link):
            if _climbs_to_root(node):
                return epoch  # renamed inside the export by the host: contained, not kept
            raise OSError(errno.ENOENT, "the directory has left the export")
        cacheable = cacheable and link.watcher is watch and watch.watching(link.watch)
        chain.append(link)
        link = link.parent
    if cacheable:
        for link in chain:
            link.proven = epoch
    return epoch


def watched(node: PassthroughNode) -> bool:
    """Whether a change of the directory ``node`` would advance this process's epoch."""
    watch = _watch
    return watch is not None and node.watcher is watch and watch.watching(node.watch)


def _still_named(node: PassthroughNode) -> bool:
    """The node's recorded name in its recorded parent still leads to it."""
    assert node.parent is not None
    try:
        st = os.stat(node.name, dir_fd=node.parent.fd(), follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == node.key


def _climbs_to_root(node: PassthroughNode) -> bool:
    """The sound check: '..' after '..' from the node's descriptor, never by path."""
    top = node
    while top.parent is not None:  # every recorded chain ends at the export's root
        top = top.parent
    root = top.key
    fd = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.fd())
    try:
        below = node.key
        for _ in range(_CLIMB_LIMIT):
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key == root:
                return True
            if key == below:
                return False  # the host's root: its '..' is itself
            below = key
            up = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = up
        return False
    finally:
        os.close(fd)
