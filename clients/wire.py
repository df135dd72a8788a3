"""Client-side 9P2000.L constants and open-mode translation; the Rreaddir parser is the wire's."""

from __future__ import annotations

from dataclasses import dataclass

from ninep.wire.constants import (
    AT_REMOVEDIR,
    DT_BLK,
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    DT_UNKNOWN,
    GETATTR_ALL,
    GETATTR_BASIC,
    LOCK_BLOCKED,
    LOCK_ERROR,
    LOCK_FLAG_BLOCK,
    LOCK_GRACE,
    LOCK_RDLCK,
    LOCK_SUCCESS,
    LOCK_UNLCK,
    LOCK_WRLCK,
    O_APPEND,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    QTDIR,
    QTFILE,
    QTSYMLINK,
    SETATTR_ATIME,
    SETATTR_ATIME_SET,
    SETATTR_CTIME,
    SETATTR_GID,
    SETATTR_MODE,
    SETATTR_MTIME,
    SETATTR_MTIME_SET,
    SETATTR_SIZE,
    SETATTR_UID,
    XATTR_CREATE,
    XATTR_REPLACE,
)
from ninep.wire.dirent import Dirent, parse_dirents

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
    "LOCK_BLOCKED",
    "LOCK_ERROR",
    "LOCK_FLAG_BLOCK",
    "LOCK_GRACE",
    "LOCK_RDLCK",
    "LOCK_SUCCESS",
    "LOCK_UNLCK",
    "LOCK_WRLCK",
    "O_APPEND",
    "O_CREAT",
    "O_DIRECTORY",
    "O_EXCL",
    "O_NOFOLLOW",
    "O_RDONLY",
    "O_RDWR",
    "O_TRUNC",
    "O_WRONLY",
    "QTDIR",
    "QTFILE",
    "QTSYMLINK",
    "SETATTR_ATIME",
    "SETATTR_ATIME_SET",
    "SETATTR_CTIME",
    "SETATTR_GID",
    "SETATTR_MODE",
    "SETATTR_MTIME",
    "SETATTR_MTIME_SET",
    "SETATTR_SIZE",
    "SETATTR_UID",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "Dirent",
    "OpenMode",
    "parse_dirents",
    "parse_mode",
    "split_path",
]

@dataclass(frozen=True, slots=True)
class OpenMode:
    """A Python open() mode string decoded into what the client sends."""

    flags: int  # Tlopen/Tlcreate flags, without O_TRUNC (sent as Tsetattr size 0)
    create: bool
    exclusive: bool
    truncate: bool
    append: bool
    readable: bool
    writable: bool
    binary: bool


def parse_mode(mode: str) -> OpenMode:
    """Translate "r", "rb", "w", "a+", "x", ... into an OpenMode; ValueError if invalid."""
    chars = set(mode)
    kinds = chars & set("rwax")
    if (len(kinds) != 1 or len(mode) != len(chars) or not chars <= set("rwaxb+t")
            or {"b", "t"} <= chars):
        raise ValueError(f"invalid mode: {mode!r}")
    kind = kinds.pop()
    plus = "+" in chars
    readable = kind == "r" or plus
    writable = kind != "r" or plus
    access = O_RDWR if readable and writable else (O_WRONLY if writable else O_RDONLY)
    flags = access
    if kind in "wax":
        flags |= O_CREAT
    if kind == "x":
        flags |= O_EXCL
    if kind == "a":
        flags |= O_APPEND
    return OpenMode(flags=flags, create=kind in "wax", exclusive=kind == "x",
                    truncate=kind == "w", append=kind == "a", readable=readable,
                    writable=writable, binary="b" in chars)


def split_path(path: str) -> tuple[str, ...]:
    """Split a path relative to the attach root into walk names ("." and "" dropped)."""
    return tuple(part for part in path.split("/") if part not in ("", "."))
