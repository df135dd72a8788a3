"""The numbers of 9P2000.L (PROTOCOL.md): open flags, attribute masks, lock codes, types.

One table for the server, vfs/ and the client library.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AT_REMOVEDIR",
    "DT_BLK",
    "DT_CHR",
    "DT_DIR",
    "DT_FIFO",
    "DT_LNK",
    "DT_REG",
    "DT_SOCK",
    "DT_UNKNOWN",
    "GETATTR_ALL",
    "GETATTR_BASIC",
    "GETATTR_MODE",
    "HEADER_SIZE",
    "IOHDRSZ",
    "LOCK_BLOCKED",
    "LOCK_ERROR",
    "LOCK_FLAG_BLOCK",
    "LOCK_GRACE",
    "LOCK_RDLCK",
    "LOCK_SUCCESS",
    "LOCK_UNLCK",
    "LOCK_WRLCK",
    "MAXWELEM",
    "MIN_MSIZE",
    "NOFID",
    "NONUNAME",
    "NOTAG",
    "O_ACCMODE",
    "O_APPEND",
    "O_CREAT",
    "O_DIRECTORY",
    "O_EXCL",
    "O_NOCTTY",
    "O_NOFOLLOW",
    "O_RDONLY",
    "O_RDWR",
    "O_TRUNC",
    "O_WRONLY",
    "QTAUTH",
    "QTDIR",
    "QTFILE",
    "QTSYMLINK",
    "READDIRHDRSZ",
    "SETATTR_ATIME",
    "SETATTR_ATIME_SET",
    "SETATTR_CTIME",
    "SETATTR_GID",
    "SETATTR_MODE",
    "SETATTR_MTIME",
    "SETATTR_MTIME_SET",
    "SETATTR_SIZE",
    "SETATTR_UID",
    "VERSION_9P2000L",
    "VERSION_UNKNOWN",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "XATTR_SIZE_MAX",
]

NOTAG: Final = 0xFFFF
NOFID: Final = 0xFFFFFFFF
NONUNAME: Final = 0xFFFFFFFF
HEADER_SIZE: Final = 7  # size[4] type[1] tag[2]
IOHDRSZ: Final = 24  # what Linux reserves for a Tread/Twrite/Rread header
READDIRHDRSZ: Final = 24
VERSION_9P2000L: Final = "9P2000.L"
VERSION_UNKNOWN: Final = "unknown"

# Tlopen/Tlcreate flags: the Linux x86 O_* values (PROTOCOL.md, "Bit values").
O_RDONLY: Final = 0o0
O_ACCMODE: Final = 0o3
O_WRONLY: Final = 0o1
O_RDWR: Final = 0o2
O_CREAT: Final = 0o100
O_EXCL: Final = 0o200
O_NOCTTY: Final = 0o400
O_TRUNC: Final = 0o1000
O_APPEND: Final = 0o2000
O_DIRECTORY: Final = 0o200000
O_NOFOLLOW: Final = 0o400000

GETATTR_BASIC: Final = 0x7FF
GETATTR_MODE: Final = 0x1  # valid's bit for the mode
GETATTR_ALL: Final = 0x3FFF

SETATTR_MODE: Final = 0x1
SETATTR_UID: Final = 0x2
SETATTR_GID: Final = 0x4
SETATTR_SIZE: Final = 0x8
SETATTR_ATIME: Final = 0x10
SETATTR_MTIME: Final = 0x20
SETATTR_CTIME: Final = 0x40
SETATTR_ATIME_SET: Final = 0x80
SETATTR_MTIME_SET: Final = 0x100

AT_REMOVEDIR: Final = 0x200
XATTR_CREATE: Final = 1
XATTR_REPLACE: Final = 2

LOCK_RDLCK: Final = 0
LOCK_WRLCK: Final = 1
LOCK_UNLCK: Final = 2
LOCK_FLAG_BLOCK: Final = 1
LOCK_SUCCESS: Final = 0
LOCK_BLOCKED: Final = 1
LOCK_ERROR: Final = 2
LOCK_GRACE: Final = 3

DT_UNKNOWN: Final = 0
DT_FIFO: Final = 1
DT_CHR: Final = 2
DT_DIR: Final = 4
DT_BLK: Final = 6
DT_REG: Final = 8
DT_LNK: Final = 10
DT_SOCK: Final = 12

QTDIR: Final = 0x80
QTSYMLINK: Final = 0x02
QTFILE: Final = 0x00
QTAUTH: Final = 0x08

# Limits both ends check. The smallest msize: Linux's client refuses a smaller
# Rversion msize with EREMOTEIO (p9_client_version, net/9p/client.c).
MIN_MSIZE: Final = 4096
MAXWELEM: Final = 16  # walk(5): at most 16 names per Twalk
XATTR_SIZE_MAX: Final = 65536  # Linux's (include/uapi/linux/limits.h): E2BIG past it
