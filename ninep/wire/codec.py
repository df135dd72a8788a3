"""The wire codec of the messages (sans-I/O): encoders and decoders compiled from each
message's layout once, at import. Nothing here touches a socket or asyncio.
"""

from __future__ import annotations

import struct
from dataclasses import fields
from typing import Any, Callable

from ninep.wire.constants import HEADER_SIZE
from ninep.wire.message_types import FIXED_LETTERS as _FIXED
from ninep.wire.message_types import MESSAGE_TYPES, Encoded, Message, Rread
from ninep.wire.qid import QID as _QID
from ninep.wire.qid import Qid

__all__ = ["HEADER", "DecodeError", "EncodeError", "decode", "decode_body", "encode",
           "encode_string", "fixed_struct", "rread_header"]

HEADER = struct.Struct("<IBH")  # size[4] type[1] tag[2]
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class DecodeError(ValueError):
    """A frame that is not a well-formed 9P2000.L message."""


class EncodeError(ValueError):
    """A message whose fields cannot be put on the wire."""


# --- the compiled codec -----------------------------------------------------

def _segments(layout: str) -> list[str]:
    """Split a layout into runs of fixed-width letters and single variable ones."""
    out: list[str] = []
    for letter in layout:
        if letter in _FIXED and out and all(c in _FIXED for c in out[-1]):
            out[-1] += letter
        else:
            out.append(letter)
    return out


def fixed_struct(cls: type[Message], skip: int = 0) -> struct.Struct:
    """The struct of a message body of fixed width (qids included), after ``skip`` pad
    bytes: the fast paths' decoders and packers are built from the same layouts."""
    codes = {**_FIXED, "Q": "BIQ"}
    if not all(c in codes for c in cls._layout):
        raise TypeError(f"{cls.__name__}: layout {cls._layout!r} is not of fixed width")
    return struct.Struct("<" + "x" * skip + "".join(codes[c] for c in cls._layout))


def fixed_names(cls: type[Message]) -> tuple[str, ...]:
    """The names of the values ``fixed_struct(cls)`` packs and unpacks, in order: the
    message's fields, a qid spelled as its three (``qid`` -> ``qid_type``,
    ``qid_version``, ``qid_path``)."""
    fixed_struct(cls)  # the same check: fixed width only
    names: list[str] = []
    for f, code in zip(fields(cls), cls._layout, strict=True):  # type: ignore[arg-type]
        names += [f"{f.name}_type", f"{f.name}_version", f"{f.name}_path"] if code == "Q" \
            else [f.name]
    return tuple(names)


def _compile_decoder(cls: type[Message]) -> Callable[[Any, int, int], Message]:
    """Build ``decode(buf, pos, end) -> message`` for one class."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    env: dict[str, Any] = {"cls": cls, "Qid": Qid, "_U16": _U16, "_U32": _U32,
                           "_QID": _QID, "DecodeError": DecodeError}
    lines = ["def decode(buf, pos, end):"]
    i = 0
    for n, seg in enumerate(_segments(cls._layout)):
        if seg[0] in _FIXED:
            st = struct.Struct("<" + "".join(_FIXED[c] for c in seg))
            env[f"_s{n}"] = st
            targets = ", ".join(names[i:i + len(seg)])
            lines.append(f"    {targets}, = _s{n}.unpack_from(buf, pos); pos += {st.size}")
            i += len(seg)
            continue
        name = names[i]
        i += 1
        if seg == "s":
            lines += ["    _n, = _U16.unpack_from(buf, pos); pos += 2",
                      f"    if pos + _n > end: raise DecodeError('string {name} overruns the message')",
                      f"    {name} = str(buf[pos:pos + _n], 'utf-8', 'surrogateescape'); pos += _n"]
        elif seg == "Q":
            lines.append(f"    {name} = Qid(*_QID.unpack_from(buf, pos)); pos += 13")
        elif seg in "DS":
            counter = "_U32" if seg == "D" else "_U16"
            width = 4 if seg == "D" else 2
            lines += [f"    _n, = {counter}.unpack_from(buf, pos); pos += {width}",
                      f"    if pos + _n > end: raise DecodeError('{name} overruns the message')",
                      f"    {name} = buf[pos:pos + _n]; pos += _n"]
        elif seg == "W":
            lines += ["    _k, = _U16.unpack_from(buf, pos); pos += 2",
                      "    _l = []",
                      "    for _ in range(_k):",
                      "        _n, = _U16.unpack_from(buf, pos); pos += 2",
                      "        if pos + _n > end: raise DecodeError('a name overruns the message')",
                      "        _l.append(str(buf[pos:pos + _n], 'utf-8', 'surrogateescape')); pos += _n",
                      f"    {name} = tuple(_l)"]
        elif seg == "X":
            lines += ["    _k, = _U16.unpack_from(buf, pos); pos += 2",
                      "    _l = []",
                      "    for _ in range(_k):",
                      "        _l.append(Qid(*_QID.unpack_from(buf, pos))); pos += 13",
                      f"    {name} = tuple(_l)"]
    lines += ["    if pos != end:",
              f"        raise DecodeError(f'{cls.__name__}: {{end - pos}} bytes left over')",
              f"    return cls({', '.join(names)})"]
    exec("\n".join(lines), env)
    return env["decode"]  # type: ignore[no-any-return]


def encode_string(value: str) -> bytes:
    """A 9P string: length[2] and UTF-8 (undecodable bytes kept by surrogateescape)."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string cannot be encoded as UTF-8: {exc.reason}") from None
    if len(raw) > 0xFFFF:
        raise EncodeError(f"string of {len(raw)} bytes is longer than 65535")
    return _U16.pack(len(raw)) + raw


def _compile_encoder(cls: type[Message]) -> Callable[[int, Message], bytes]:
    """Build ``encode(tag, msg) -> bytes`` for one class."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    env: dict[str, Any] = {"HEADER": HEADER, "_U16": _U16, "_U32": _U32,
                           "_QID": _QID, "_str": encode_string, "T": cls.type}
    lines = ["def encode(tag, m):", "    parts = [b'']"]
    i = 0
    for n, seg in enumerate(_segments(cls._layout)):
        if seg[0] in _FIXED:
            st = struct.Struct("<" + "".join(_FIXED[c] for c in seg))
            env[f"_s{n}"] = st
            args = ", ".join(f"m.{x}" for x in names[i:i + len(seg)])
            lines.append(f"    parts.append(_s{n}.pack({args}))")
            i += len(seg)
            continue
        name = names[i]
        i += 1
        if seg == "s":
            lines.append(f"    parts.append(_str(m.{name}))")
        elif seg == "Q":
            lines.append(f"    _q = m.{name}; parts.append(_QID.pack(_q.type, _q.version, _q.path))")
        elif seg == "D":
            lines.append(f"    parts.append(_U32.pack(len(m.{name}))); parts.append(m.{name})")
        elif seg == "S":
            lines.append(f"    parts.append(_U16.pack(len(m.{name}))); parts.append(m.{name})")
        elif seg == "W":
            lines += [f"    parts.append(_U16.pack(len(m.{name})))",
                      f"    parts.extend(_str(w) for w in m.{name})"]
        elif seg == "X":
            lines += [f"    parts.append(_U16.pack(len(m.{name})))",
                      f"    parts.extend(_QID.pack(q.type, q.version, q.path) for q in m.{name})"]
    lines += ["    size = sum(map(len, parts)) + 7",
              "    parts[0] = HEADER.pack(size, T, tag)",
              "    return b''.join(parts)"]
    exec("\n".join(lines), env)
    return env["encode"]  # type: ignore[no-any-return]


_DECODERS = {t: _compile_decoder(c) for t, c in MESSAGE_TYPES.items()}
_ENCODERS = {c: _compile_encoder(c) for c in MESSAGE_TYPES.values()}


def encode(tag: int, msg: Message | Encoded) -> bytes:
    """Return the whole frame for ``msg`` with ``tag``."""
    if type(msg) is Encoded:
        return HEADER.pack(HEADER_SIZE + len(msg.body), msg.type, tag) + msg.body
    try:
        return _ENCODERS[type(msg)](tag, msg)  # type: ignore[index,arg-type]
    except struct.error as exc:
        raise EncodeError(f"{type(msg).__name__}: {exc}") from None


def rread_header(tag: int, count: int) -> bytes:
    """The 11 bytes that precede ``count`` bytes of Rread data (for scatter writes)."""
    return HEADER.pack(HEADER_SIZE + 4 + count, Rread.type, tag) + _U32.pack(count)


def decode_body(msg_type: int, buf: Any, pos: int, end: int) -> Message:
    """Decode the body ``buf[pos:end]`` of a message of type ``msg_type``.

    Raises KeyError for an unknown type and DecodeError for a bad body.
    """
    decoder = _DECODERS[msg_type]
    try:
        return decoder(buf, pos, end)
    except struct.error:
        raise DecodeError(f"{MESSAGE_TYPES[msg_type].__name__}: message is truncated") from None
    except UnicodeDecodeError as exc:  # pragma: no cover - surrogateescape accepts all bytes
        raise DecodeError(str(exc)) from None


def decode(frame: bytes | memoryview) -> tuple[int, Message]:
    """Decode one whole frame (size header included) into (tag, message)."""
    if len(frame) < HEADER_SIZE:
        raise DecodeError(f"frame of {len(frame)} bytes is shorter than a header")
    size, msg_type, tag = HEADER.unpack_from(frame, 0)
    if size != len(frame):
        raise DecodeError(f"size field {size} does not match frame length {len(frame)}")
    if msg_type not in _DECODERS:
        raise DecodeError(f"unknown message type {msg_type}")
    return tag, decode_body(msg_type, frame, HEADER_SIZE, size)
