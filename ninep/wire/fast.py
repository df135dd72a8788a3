"""The fast paths' decoders and packers, built from the messages' own layouts.

The transport answers the requests of a listing (Twalk of one name, Tgetattr,
Tclunk) and Tread straight from the frame, without message objects; these are
their decoders (each one struct call, the header skipped by pad bytes) and the
packers of their replies. Tests check each against the generic codec.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any, Callable, Final, Protocol

from ninep.wire.codec import HEADER, fixed_struct
from ninep.wire.constants import GETATTR_ALL, HEADER_SIZE
from ninep.wire.message_types import (
    Message,
    Rclunk,
    Rgetattr,
    Tclunk,
    Tflush,
    Tgetattr,
    Tread,
)
from ninep.wire.qid import QID_VERSION, QTYPE_BY_FORMAT

__all__ = [
    "GETATTR_VALID",
    "RGETATTR_SIZE",
    "TCLUNK_SIZE",
    "TFLUSH_SIZE",
    "TGETATTR_SIZE",
    "TREAD_SIZE",
    "AttrFields",
    "decode_short_twalk",
    "rclunk_frame",
    "rgetattr_body",
    "rgetattr_frame",
    "rwalk_body",
    "unpack_header",
    "unpack_tclunk",
    "unpack_tflush",
    "unpack_tgetattr",
    "unpack_tread",
]

_Unpack = Callable[[Any], tuple[Any, ...]]

unpack_header: Final[Callable[[Any], tuple[Any, ...]]] = HEADER.unpack_from  # size, type, tag


def _body(cls: type[Message]) -> tuple[int, _Unpack]:
    """The whole frame size of a fixed-size T-message, and its body's decoder."""
    st = fixed_struct(cls, skip=HEADER_SIZE)
    return st.size, st.unpack_from


TGETATTR_SIZE, unpack_tgetattr = _body(Tgetattr)  # (fid, request_mask)
TCLUNK_SIZE, unpack_tclunk = _body(Tclunk)  # (fid,)
TREAD_SIZE, unpack_tread = _body(Tread)  # (fid, offset, count)
TFLUSH_SIZE, unpack_tflush = _body(Tflush)  # (oldtag,)

# Twalk: fid[4] newfid[4] nwname[2], then nwname strings (layout "iiW")
_TWALK_HEAD: Final = struct.Struct(f"<{HEADER_SIZE}xIIH")
_TWALK_SIZE: Final = _TWALK_HEAD.size  # with no names: a clone
_U16: Final = struct.Struct("<H")


def decode_short_twalk(frame: bytes, size: int) -> tuple[int, int, tuple[str, ...]] | None:
    """(fid, newfid, names) of a Twalk of no name or one; None for any other (longer
    walks and malformed frames take the generic decoder, which names the fault)."""
    if size < _TWALK_SIZE:
        return None
    number, newfid, nwname = _TWALK_HEAD.unpack_from(frame)
    if nwname == 0:
        return (number, newfid, ()) if size == _TWALK_SIZE else None
    if nwname != 1 or size < _TWALK_SIZE + 2:
        return None
    length = _U16.unpack_from(frame, _TWALK_SIZE)[0]
    if size != _TWALK_SIZE + 2 + length:
        return None
    return number, newfid, (str(frame[_TWALK_SIZE + 2:size], "utf-8", "surrogateescape"),)


def rwalk_body(qids: list[bytes]) -> bytes:
    """The Rwalk body (layout "X": nwqid[2], then the qids) of qids packed by qid.pack_qid."""
    return _U16.pack(len(qids)) + b"".join(qids)

rclunk_frame: Final[Callable[[int], bytes]] = partial(HEADER.pack, HEADER_SIZE, Rclunk.type)


class AttrFields(Protocol):
    """What an Rgetattr carries of a file (vfs.node.Attr has these fields)."""

    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    btime_ns: int
    gen: int
    data_version: int


GETATTR_VALID: Final = GETATTR_ALL  # BASIC | BTIME | GEN | DATA_VERSION
_RGETATTR: Final = fixed_struct(Rgetattr)
_RGETATTR_FRAME: Final = struct.Struct("<IBH" + _RGETATTR.format[1:])  # with its header
RGETATTR_SIZE: Final = HEADER_SIZE + _RGETATTR.size
_NS: Final = 1_000_000_000


def rgetattr_body(qid_path: int, a: AttrFields) -> bytes:
    """The Rgetattr body packed in one call: getattr is the hottest request there is.
    The qid is Qid.of(a.mode, qid_path); times split into seconds (signed: before
    1970 is negative) and nanoseconds."""
    return _RGETATTR.pack(
        GETATTR_VALID, QTYPE_BY_FORMAT[(a.mode >> 12) & 0xF], QID_VERSION, qid_path,
        a.mode, a.uid, a.gid, a.nlink, a.rdev, a.size, a.blksize, a.blocks,
        a.atime_ns // _NS, a.atime_ns % _NS, a.mtime_ns // _NS, a.mtime_ns % _NS,
        a.ctime_ns // _NS, a.ctime_ns % _NS, a.btime_ns // _NS, a.btime_ns % _NS,
        a.gen, a.data_version)


def rgetattr_frame(tag: int, qid_path: int, a: AttrFields) -> bytes:
    """The whole Rgetattr frame, header included, in one call (the transport's fast path)."""
    return _RGETATTR_FRAME.pack(
        RGETATTR_SIZE, Rgetattr.type, tag,
        GETATTR_VALID, QTYPE_BY_FORMAT[(a.mode >> 12) & 0xF], QID_VERSION, qid_path,
        a.mode, a.uid, a.gid, a.nlink, a.rdev, a.size, a.blksize, a.blocks,
        a.atime_ns // _NS, a.atime_ns % _NS, a.mtime_ns // _NS, a.mtime_ns % _NS,
        a.ctime_ns // _NS, a.ctime_ns % _NS, a.btime_ns // _NS, a.btime_ns % _NS,
        a.gen, a.data_version)
