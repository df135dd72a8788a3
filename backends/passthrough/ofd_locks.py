"""Clients' byte-range locks held on the host file as open-file-description locks.

Each lock owner (connection, client_id, proc_id: vfs/locks.py) that holds a
range of a file gets its own open file description of it, reopened through
/proc/self/fd from the client's open handle, and its ranges are set there with
F_OFD_SETLK (fcntl(2), "Open file description locks"). Such a lock belongs to
the description, not to the process, so the owners of one server process
conflict with each other as POSIX owners do, with every other worker process
(ninep/workers/) and with the host's own programs using fcntl or OFD locks; one
description per owner makes the host's merging and splitting of its ranges the
same as ours. Closing the description lets go of all of them.

Every call is F_OFD_SETLK or F_OFD_GETLK, which never wait: a blocked Tlock
looks again from the event loop (vfs.locks.LockManager.lock), so it never holds
a thread and stays cancellable by Tflush.

Cost: one descriptor per (owner, file) with ranges held, bounded by the ranges
a connection may hold (vfs.locks.MAX_LOCKS_PER_CONNECTION).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Callable

from ninep.vfs.locks import OFFSET_MAX, RDLCK, UNLCK, WRLCK, HostLocks, Lock, Owner

from .hostcalls import proc_path

__all__ = ["OfdLocks"]

# struct flock (x86-64, arm64): short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid; native alignment pads it to 32 bytes
_FLOCK = struct.Struct("@hhqqi4x")
_HOST_TYPES = {RDLCK: fcntl.F_RDLCK, WRLCK: fcntl.F_WRLCK, UNLCK: fcntl.F_UNLCK}
_OUR_TYPES = {v: k for k, v in _HOST_TYPES.items()}
_OPEN_EXTRA = os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # never wait on a FIFO's other end


#: the largest offset a host lock can name (off_t); a range through it reaches the end
#: of any file, as length 0 does (Linux's flock_to_posix_lock: OFFSET_MAX)
_HOST_OFFSET_MAX = 2**63 - 1


def _flock(lock_type: int, start: int, end: int) -> bytes:
    # 0: to the end of the file; a client's range through 2**63 - 1 (start 0, length
    # 2**63, which the checks allow) has no l_len of its own
    length = 0 if end >= _HOST_OFFSET_MAX else end - start + 1
    return _FLOCK.pack(_HOST_TYPES[lock_type], os.SEEK_SET, start, length, 0)


class OfdLocks:
    """One host file's OFD locks, a description per owner that holds a range.

    ``source`` gives the descriptor of an open handle of the file (the current
    request's), and whether it was opened for reading and for writing.
    """

    def __init__(self, source: Callable[[], tuple[int, bool, bool]]) -> None:
        self.source = source
        self._fds: dict[Owner, int] = {}

    def adopt(self, newer: HostLocks) -> None:
        if isinstance(newer, OfdLocks):
            self.source = newer.source

    def _open(self) -> int:
        """A new description of the file: read-write where the server may, else the
        client handle's own access (F_RDLCK needs read access, F_WRLCK write)."""
        fd, readable, writable = self.source()
        if fd < 0:
            raise OSError(errno.EBADF, "the file is closed")
        path = proc_path(fd)
        try:
            return os.open(path, os.O_RDWR | _OPEN_EXTRA)
        except OSError:
            if readable and writable:
                raise
            return os.open(path, (os.O_RDONLY if readable else os.O_WRONLY) | _OPEN_EXTRA)

    def set(self, owner: Owner, lock_type: int, start: int, end: int) -> bool:
        fd = self._fds.get(owner)
        opened = fd is None
        if fd is None:
            if lock_type == UNLCK:
                return True
            fd = self._open()
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(lock_type, start, end))
        except OSError as exc:
            if opened:  # the owner holds nothing here: no description kept for it
                os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):  # held by another process
                return False
            raise
        self._fds[owner] = fd
        return True

    def test(self, owner: Owner, lock_type: int, start: int, end: int) -> Lock | None:
        # through the owner's own description, so that its own ranges do not count
        fd = self._fds.get(owner)
        if fd is None:
            fd = self.source()[0]
            if fd < 0:
                return None
        # RDLCK or WRLCK: the lock table asks UNLCK's question as WRLCK's (vfs/locks.py)
        got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(lock_type, start, end))
        host_type, _, first, length, pid = _FLOCK.unpack(got)
        if host_type == fcntl.F_UNLCK:
            return None
        last = OFFSET_MAX if length == 0 else first + length - 1
        # an OFD lock has no process (l_pid -1); a POSIX lock names its holder's pid
        return Lock(_OUR_TYPES[host_type], first, last, (-1, "", max(pid, 0)))

    def drop(self, owner: Owner) -> None:
        fd = self._fds.pop(owner, None)
        if fd is not None:
            os.close(fd)  # the description's locks go with it
