"""Opens of regular files under a user's identity without switching the thread's own:
an io_uring personality per user, so the kernel checks the open for that user.

fsident.py switches the thread: setfsgid, setfsuid, and the same two back, each of
which makes the kernel allocate, copy and RCU-free the thread's credentials even
when nothing changes (prepare_creds, commit_creds or abort_creds): 2.5-3 us per
call on this VM, so 10-12 us per open, a quarter of the walk, open and clunk of a
file (bench/README.md, "request_cost.py"). io_uring runs a request under the
credentials registered as a personality (IORING_REGISTER_PERSONALITY, Linux 5.6):
they are taken from the thread once per user while it is switched, and every later
open names them (``sqe.personality``) with override_creds inside the kernel, which
allocates nothing. The thread never holds the user's identity for it.

The open is by name in the node's recorded directory (never following a
symlink), and only its result is trusted when it is the very file the node holds
(device and inode): anything else (a file the user may not open, a name the host
renamed or unlinked, a ring the kernel refuses) answers None, and the caller opens
it the authoritative way (fsident's switch and the /proc/self/fd link), so every
error a client sees still comes from there. Regular files only, without O_TRUNC:
io_uring hands an open that must truncate to a worker thread (io_openat_force_async),
which costs a wake-up here.

One ring per process and thread that asks (the event loop's); forgotten in a
forked child, whose parent keeps using it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import platform
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fsident import HostCred

__all__ = ["open_as", "ring_works"]

log = logging.getLogger(__name__)

#: syscall(2) numbers: io_uring_setup, io_uring_enter, io_uring_register (the same on
#: every architecture that has them, the generic table's 425-427)
_SETUP, _ENTER, _REGISTER = 425, 426, 427
_ARCHES = frozenset({"x86_64", "aarch64", "ppc64le", "s390x", "riscv64", "loongarch64"})
_OP_OPENAT2 = 28
#: openat2(2)'s resolve: never a symlink or a magic link, never above the directory, and
#: only through what the dentry cache holds (RESOLVE_CACHED): io_uring then opens inline
#: or answers EAGAIN, and never hands the open to a worker thread, where a FIFO put in
#: the file's place would block it (inline, io_uring opens with O_NONBLOCK and clears it
#: on the file afterwards)
_RESOLVE = 0x02 | 0x04 | 0x08 | 0x20
_ENTER_GETEVENTS = 1
_REGISTER_PERSONALITY, _UNREGISTER_PERSONALITY = 9, 10
_OFF_SQES = 0x10000000
_FEAT_SINGLE_MMAP = 1
_PERSONALITIES = 64  # users kept registered per ring (each pins one struct cred)
_NAME_ROOM = 4096
_HOW_SIZE = 24  # sizeof(struct open_how)


class _SqOffsets(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("head", "tail", "ring_mask", "ring_entries",
                                               "flags", "dropped", "array", "resv1")]
    _fields_ += [("user_addr", ctypes.c_uint64)]


class _CqOffsets(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("head", "tail", "ring_mask", "ring_entries",
                                               "overflow", "cqes", "flags", "resv1")]
    _fields_ += [("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):  # struct io_uring_params
    _fields_ = [(n, ctypes.c_uint32) for n in ("sq_entries", "cq_entries", "flags",
                                               "sq_thread_cpu", "sq_thread_idle", "features",
                                               "wq_fd")]
    _fields_ += [("resv", ctypes.c_uint32 * 3), ("sq_off", _SqOffsets),
                 ("cq_off", _CqOffsets)]


class _OpenHow(ctypes.Structure):  # struct open_how
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


#: struct io_uring_sqe as IORING_OP_OPENAT2 reads it, written in one call: opcode, flags,
#: ioprio, fd, off (the open_how), addr (the name), len (open_how's size), open_flags,
#: user_data, buf_index, personality, file_index, addr3, pad
_SQE = struct.Struct("=BBHiQQIIQHHiQQ")
_CQE = struct.Struct("=Qi")  # struct io_uring_cqe: user_data, res (flags follow)
_U32 = struct.Struct("=I")


def _syscall() -> Callable[..., int] | None:
    if platform.machine() not in _ARCHES or ctypes.sizeof(_Params) != 120:
        return None
    try:
        func = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - not a Linux C library
        return None
    func.restype = ctypes.c_long
    return func


_sys = _syscall()


class _Ring:
    """One io_uring with a single request in flight at a time: submit, wait, reap."""

    def __init__(self) -> None:
        assert _sys is not None and _SQE.size == 64
        self.fd = -1
        params = _Params()
        fd = _sys(_SETUP, 2, ctypes.byref(params))
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"io_uring_setup: {os.strerror(code)}")
        self.fd = int(fd)
        try:
            if not params.features & _FEAT_SINGLE_MMAP:
                raise OSError(errno.ENOSYS, "io_uring without one mmap for both rings")
            sq, cq = params.sq_off, params.cq_off
            size = max(sq.array + params.sq_entries * 4, cq.cqes + params.cq_entries * 16)
            rw = mmap.PROT_READ | mmap.PROT_WRITE
            self._rings = mmap.mmap(self.fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, rw)
            self._sqes = mmap.mmap(self.fd, params.sq_entries * 64,
                                   mmap.MAP_SHARED | mmap.MAP_POPULATE, rw, offset=_OFF_SQES)
        except BaseException:
            self.close()
            raise
        rings = self._rings
        for i in range(params.sq_entries):  # the SQ array: slot i is SQE i, for good
            _U32.pack_into(rings, sq.array + 4 * i, i)
        self._sq_at = (sq.head, sq.tail)
        self._sq_mask = _U32.unpack_from(rings, sq.ring_mask)[0]
        self._cq_at = (cq.head, cq.tail)
        self._cq_mask = _U32.unpack_from(rings, cq.ring_mask)[0]
        self._cqes_at = cq.cqes
        # this thread alone submits and reaps: it keeps both counters, the kernel the others
        self._tail = _U32.unpack_from(rings, sq.tail)[0]
        self._head = _U32.unpack_from(rings, cq.head)[0]
        self._name = ctypes.create_string_buffer(_NAME_ROOM)
        self._name_addr = ctypes.addressof(self._name)
        self._how = _OpenHow(0, 0, _RESOLVE)
        self._how_addr = ctypes.addressof(self._how)
        self.personalities: dict[tuple[int, int, tuple[int, ...]], int] = {}

    def openat2(self, personality: int, dirfd: int, name: bytes, flags: int) -> int:
        """openat2(dirfd, name, {flags, 0, _RESOLVE}) as ``personality``: the descriptor,
        or -errno."""
        if len(name) >= _NAME_ROOM or b"\0" in name:
            return -errno.ENAMETOOLONG
        self._name.value = name
        self._how.flags = flags
        rings, tail = self._rings, self._tail
        _SQE.pack_into(self._sqes, (tail & self._sq_mask) * 64, _OP_OPENAT2, 0, 0, dirfd,
                       self._how_addr, self._name_addr, _HOW_SIZE, 0, tail, 0, personality,
                       0, 0, 0)
        self._tail = tail = (tail + 1) & 0xFFFFFFFF
        _U32.pack_into(rings, self._sq_at[1], tail)  # io_uring_enter orders it for the kernel
        assert _sys is not None
        done = _sys(_ENTER, self.fd, 1, 1, _ENTER_GETEVENTS, None, 0)
        head = self._head
        while done < 0 or _U32.unpack_from(rings, self._cq_at[1])[0] == head:
            code = ctypes.get_errno() if done < 0 else errno.EINTR
            if code != errno.EINTR:
                raise OSError(code, f"io_uring_enter: {os.strerror(code)}")
            unsent = (tail - _U32.unpack_from(rings, self._sq_at[0])[0]) & 0xFFFFFFFF
            done = _sys(_ENTER, self.fd, unsent, 1, _ENTER_GETEVENTS, None, 0)
        result: int
        user_data, result = _CQE.unpack_from(rings, self._cqes_at + (head & self._cq_mask) * 16)
        self._head = head = (head + 1) & 0xFFFFFFFF
        _U32.pack_into(rings, self._cq_at[0], head)
        if user_data != (tail - 1) & 0xFFFFFFFF:  # pragma: no cover - one in flight: ours
            raise OSError(errno.EIO, "io_uring completed another request")
        return result

    def close(self) -> None:
        """The ring's descriptor (its personalities and mappings go with the last use)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:  # a thread that made one ended: no descriptor left behind
        self.close()

    def register_current(self) -> int:
        """A personality holding this thread's credentials as they are now."""
        assert _sys is not None
        found = _sys(_REGISTER, self.fd, _REGISTER_PERSONALITY, None, 0)
        if found < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"io_uring personality: {os.strerror(code)}")
        return int(found)

    def forget_personalities(self) -> None:
        assert _sys is not None
        for personality in self.personalities.values():
            _sys(_REGISTER, self.fd, _UNREGISTER_PERSONALITY, None, personality)
        self.personalities.clear()


class _PerThread(threading.local):
    ring: _Ring | None = None
    refused = False  # the kernel (or a seccomp filter) said no once: never ask again


_local = _PerThread()
_works: bool | None = None  # process-wide: whether a ring could be made at all


def ring_works() -> bool:
    """Whether this thread opens through a ring (made now if not yet)."""
    return _ring() is not None


def _ring() -> _Ring | None:
    global _works
    local = _local
    if local.ring is not None or local.refused or _works is False or _sys is None:
        return local.ring
    try:
        local.ring = _Ring()
        _works = True
    except (OSError, ValueError) as exc:
        local.refused = True
        if _works is None:
            _works = False
            log.info("no io_uring (%s): passthrough opens for users switch the thread's "
                     "fsuid", exc)
    return local.ring


def open_as(cred: HostCred, dirfd: int, name: str, flags: int) -> int | None:
    """Open ``name`` in ``dirfd`` with ``flags`` as the kernel would for ``cred``: the
    descriptor, or None for anything but success (the caller asks the authoritative
    way, which gives the client its errno)."""
    ring = _local.ring or _ring()
    if ring is None:
        return None
    key = (cred.uid, cred.gid, cred.group_key)
    personality = ring.personalities.get(key)
    try:
        if personality is None:
            personality = _register(ring, cred, key)
        fd = ring.openat2(personality, dirfd, name.encode("utf-8", "surrogateescape"),
                          flags | os.O_NOFOLLOW)
    except OSError as exc:  # the ring broke: switch threads' identities from now on
        log.warning("io_uring open failed (%s): passthrough opens for users switch the "
                    "thread's fsuid from now on", exc)
        _drop()
        return None
    return fd if fd >= 0 else None


def _register(ring: _Ring, cred: HostCred,
              key: tuple[int, int, tuple[int, ...]]) -> int:
    from .fsident import under  # the one place that switches identities

    if len(ring.personalities) >= _PERSONALITIES:
        ring.forget_personalities()
    personality = under(cred, ring.register_current)
    ring.personalities[key] = personality
    return personality


def _drop() -> None:
    local = _local
    if local.ring is not None:
        local.ring.close()
        local.ring = None
    local.refused = True


def _forget_after_fork() -> None:
    # the child shares the parent's rings through the inherited descriptor: never use them
    global _local
    ring = _local.ring
    if ring is not None:
        ring.close()
    _local = _PerThread()


os.register_at_fork(after_in_child=_forget_after_fork)
