"""The qid: the server's identity of a file on the wire, and the one rule that builds it."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ninep.wire.constants import QTAUTH, QTDIR, QTFILE, QTSYMLINK

__all__ = ["QID", "QID_VERSION", "QTYPE_BY_FORMAT", "Qid", "pack_qid", "qid_type"]

QID: Final = struct.Struct("<BIQ")  # type[1] version[4] path[8]
# No backend tracks versions of a file's contents: always 0, which tells Linux's
# client (v9fs, cache=loose) nothing it would act on.
QID_VERSION: Final = 0

# The qid type by the file-format bits of a mode (S_IFMT >> 12), which are also the
# DT_* type of a directory entry (Linux's fs_umode_to_dtype): a directory is
# QTDIR, a symlink QTSYMLINK, everything else QTFILE. Versions are always 0: no
# backend tracks a file's version, and Linux's client uses it only for caching.
QTYPE_BY_FORMAT: Final = tuple(QTDIR if f == 0o04 else QTSYMLINK if f == 0o12 else QTFILE
                                for f in range(16))


def qid_type(mode: int) -> int:
    """The qid type of a file of ``mode`` (st_mode); ``dtype << 12`` for a DT_* type."""
    return QTYPE_BY_FORMAT[(mode >> 12) & 0xF]


@dataclass(frozen=True, slots=True)
class Qid:
    """The server's unique identity of a file: type, version, path."""

    type: int
    version: int
    path: int

    @classmethod
    def of(cls, mode: int, path: int) -> Qid:
        """The qid of a file of ``mode`` whose unique path (Mount.qid_path) is ``path``."""
        return cls(QTYPE_BY_FORMAT[(mode >> 12) & 0xF], QID_VERSION, path)

    @classmethod
    def auth(cls, path: int) -> Qid:
        """The qid of an afid (Rauth): QTAUTH, numbered apart from every file."""
        return cls(QTAUTH, QID_VERSION, path)


def pack_qid(mode: int, path: int) -> bytes:
    """The 13 wire bytes of ``Qid.of(mode, path)``, without the object (Rwalk's hot path)."""
    return QID.pack(QTYPE_BY_FORMAT[(mode >> 12) & 0xF], QID_VERSION, path)
