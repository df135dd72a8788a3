"""The 9P2000.L messages and their codec, in one import (``from ninep.wire import messages as m``).

The parts live in their own modules: message_types.py (the messages and their
layouts), codec.py (encode/decode compiled from the layouts), qid.py, dirent.py
(Rreaddir entries) and constants.py (the header numbers).
"""

from __future__ import annotations

from ninep.wire import message_types as _types
from ninep.wire.codec import DecodeError, EncodeError, decode, decode_body, encode, rread_header
from ninep.wire.constants import (
    HEADER_SIZE,
    IOHDRSZ,
    NOFID,
    NONUNAME,
    NOTAG,
    READDIRHDRSZ,
    VERSION_9P2000L,
    VERSION_UNKNOWN,
)
from ninep.wire.dirent import pack_dirent
from ninep.wire.message_types import *  # noqa: F403 - every message class, by its spec name
from ninep.wire.qid import Qid

__all__ = [
    "HEADER_SIZE",
    "IOHDRSZ",
    "NOFID",
    "NONUNAME",
    "NOTAG",
    "READDIRHDRSZ",
    "VERSION_9P2000L",
    "VERSION_UNKNOWN",
    "DecodeError",
    "EncodeError",
    "Qid",
    "decode",
    "decode_body",
    "encode",
    "pack_dirent",
    "rread_header",
    *_types.__all__,
]
