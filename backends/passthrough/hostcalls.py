"""Host-side helpers: /proc/self/fd paths, open-flag translation, statfs with the fs magic."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable

from ninep.vfs.node import StatFs

__all__ = ["NOWAIT", "O_PATH_FLAGS", "host_open_flags", "host_statfs", "open_noatime",
           "proc_path"]

#: how every name below the export is resolved: never following a symlink
O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
NOWAIT = getattr(os, "RWF_NOWAIT", 0)

# 9P2000.L P9_DOTL_* open flags (the Linux x86 values, whatever the host) -> host O_*.
# Dropped as QEMU drops them (hw/9pfs/9p.c get_dotl_openflags): CREAT and EXCL (Tlcreate
# makes files), NOCTTY, FASYNC (no signals for a remote client) and DIRECT (a hint the
# server does not honour: its buffers are not aligned). NOFOLLOW is implied: the server
# never follows a symlink. CLOEXEC is always set on the host.
_DOTL_ACCMODE = 0o3
_DOTL_TO_HOST = (
    (0o1000, os.O_TRUNC),
    (0o2000, os.O_APPEND),
    (0o4000, os.O_NONBLOCK),
    (0o10000, os.O_DSYNC),
    (0o100000, getattr(os, "O_LARGEFILE", 0)),
    (0o200000, os.O_DIRECTORY),
    (0o1000000, getattr(os, "O_NOATIME", 0)),
    (0o4000000, os.O_SYNC),
)
_ACCMODES = {0: os.O_RDONLY, 1: os.O_WRONLY, 2: os.O_RDWR, 3: os.O_RDWR}


def proc_path(fd: int) -> str:
    """The magic link that reopens exactly the object ``fd`` refers to (even if moved or
    unlinked). Only ever followed for non-symlinks: following it for a symlink would
    follow the symlink's target too."""
    return f"/proc/self/fd/{fd}"


def host_open_flags(dotl: int) -> int:
    """Host O_* flags for 9P2000.L ``dotl`` flags, translated bit by bit (PROTOCOL.md)."""
    flags = _ACCMODES[dotl & _DOTL_ACCMODE] | os.O_CLOEXEC | os.O_NOCTTY
    for bit, host in _DOTL_TO_HOST:
        if dotl & bit:
            flags |= host
    return flags


def open_noatime(path: str, flags: int) -> int:
    """Open; O_NOATIME needs ownership or CAP_FOWNER, so without them it is dropped."""
    try:
        return os.open(path, flags)
    except PermissionError:
        if not flags & getattr(os, "O_NOATIME", 0):
            raise
        return os.open(path, flags & ~os.O_NOATIME)


class _StatfsBuf(ctypes.Structure):
    # struct statfs on 64-bit Linux (all fields word-sized but f_fsid)
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
                ("f_blocks", ctypes.c_ulong), ("f_bfree", ctypes.c_ulong),
                ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
                ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2),
                ("f_namelen", ctypes.c_long), ("f_frsize", ctypes.c_long),
                ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


def _load_fstatfs() -> Callable[..., int] | None:
    if ctypes.sizeof(ctypes.c_long) != 8:
        return None  # the layout above is the 64-bit one
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.fstatfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.POINTER(_StatfsBuf)]
    func.restype = ctypes.c_int
    return func


_fstatfs = _load_fstatfs()


def host_statfs(fd: int) -> StatFs:
    """The host's figures for the filesystem holding ``fd`` (fstatfs works on O_PATH)."""
    if _fstatfs is not None:
        buf = _StatfsBuf()
        if _fstatfs(fd, ctypes.byref(buf)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        fsid = (buf.f_fsid[0] & 0xFFFFFFFF) | (buf.f_fsid[1] & 0xFFFFFFFF) << 32
        return StatFs(bsize=buf.f_bsize, blocks=buf.f_blocks, bfree=buf.f_bfree,
                      bavail=buf.f_bavail, files=buf.f_files, ffree=buf.f_ffree,
                      fsid=fsid, namelen=buf.f_namelen, fstype=buf.f_type & 0xFFFFFFFF)
    try:
        vfs = os.fstatvfs(fd)
    except OSError as exc:  # pragma: no cover - only without ctypes
        raise OSError(exc.errno or errno.EIO, "statfs failed") from None
    return StatFs(bsize=vfs.f_bsize, blocks=vfs.f_blocks, bfree=vfs.f_bfree,
                  bavail=vfs.f_bavail, files=vfs.f_files, ffree=vfs.f_ffree,
                  namelen=vfs.f_namemax)
