"""Rreaddir entries, qid[13] offset[8] type[1] name[s]: the server packs, the client parses."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ninep.wire.codec import encode_string
from ninep.wire.qid import Qid

__all__ = ["Dirent", "pack_dirent", "parse_dirents"]

_DIRENT_FIXED: Final = struct.Struct("<BIQQB")  # qid, offset, type
_U16: Final = struct.Struct("<H")


@dataclass(frozen=True, slots=True)
class Dirent:
    """One raw Rreaddir entry: qid, the cookie resuming after it, DT_* type, name."""

    qid: Qid
    offset: int
    type: int
    name: str


def pack_dirent(qid: Qid, offset: int, dtype: int, name: str) -> bytes:
    """One Rreaddir entry: qid, the cookie resuming after it, DT_* type, name."""
    return _DIRENT_FIXED.pack(qid.type, qid.version, qid.path, offset, dtype) + encode_string(name)


def parse_dirents(data: bytes | memoryview) -> list[Dirent]:
    """Parse the packed entries of an Rreaddir; ValueError if an entry is cut short."""
    out: list[Dirent] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < _DIRENT_FIXED.size + 2:
            raise ValueError(f"Rreaddir entry at byte {pos} is truncated")
        qtype, qversion, qpath, offset, dtype = _DIRENT_FIXED.unpack_from(data, pos)
        pos += _DIRENT_FIXED.size
        (length,) = _U16.unpack_from(data, pos)
        pos += 2
        if pos + length > end:
            raise ValueError(f"Rreaddir name at byte {pos} overruns the data")
        name = str(bytes(data[pos:pos + length]), "utf-8", "surrogateescape")
        pos += length
        out.append(Dirent(Qid(qtype, qversion, qpath), offset, dtype, name))
    return out
