"""The 9P2000.L messages as values, and their wire codec (sans-I/O).

One frozen, slotted dataclass per message, named as in the spec. Each class
declares its wire layout in ``_layout``; encoders and decoders are compiled
from the layout once, at import. Nothing here touches a socket or asyncio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Final, TypeVar, dataclass_transform

__all__ = [
    "HEADER_SIZE",
    "IOHDRSZ",
    "MESSAGE_TYPES",
    "NOFID",
    "NONUNAME",
    "NOTAG",
    "READDIRHDRSZ",
    "VERSION_9P2000L",
    "VERSION_UNKNOWN",
    "DecodeError",
    "EncodeError",
    "Encoded",
    "Message",
    "Qid",
    "decode",
    "decode_body",
    "encode",
    "pack_dirent",
    "rread_header",
]

NOTAG: Final = 0xFFFF
NOFID: Final = 0xFFFFFFFF
NONUNAME: Final = 0xFFFFFFFF
HEADER_SIZE: Final = 7
IOHDRSZ: Final = 24  # what Linux reserves for a Tread/Twrite/Rread header
READDIRHDRSZ: Final = 24
VERSION_9P2000L: Final = "9P2000.L"
VERSION_UNKNOWN: Final = "unknown"

_HEADER = struct.Struct("<IBH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_QID = struct.Struct("<BIQ")
_DIRENT_FIXED = struct.Struct("<BIQQB")  # qid, offset, type


class DecodeError(ValueError):
    """A frame that is not a well-formed 9P2000.L message."""


class EncodeError(ValueError):
    """A message whose fields cannot be put on the wire."""


@dataclass(frozen=True, slots=True)
class Qid:
    """The server's unique identity of a file: type, version, path."""

    type: int
    version: int
    path: int


class Message:
    """Base of every T- and R-message; ``type`` is the wire type number."""

    __slots__ = ()
    type: ClassVar[int]
    _layout: ClassVar[str]


class Encoded:
    """A reply whose body a hot-path handler packed itself (``type``: the R-type).

    ``encode`` frames it like any message; tests check each such body equals
    the generic encoding of the same message.
    """

    __slots__ = ("body", "type")

    def __init__(self, type: int, body: bytes) -> None:
        self.type = type
        self.body = body


# Layout letters: b u8, h u16, i u32, q u64, t s64 (seconds of a time:
# Linux reads and writes them signed, before 1970 is negative), s string,
# Q qid, D data (count[4] + bytes), S stat (n[2] + bytes), W names (n[2] +
# strings), X qids (n[2] + qids). A D field must come last.
_FIXED = {"b": "B", "h": "H", "i": "I", "q": "Q", "t": "q"}

MESSAGE_TYPES: dict[int, type[Message]] = {}
_M = TypeVar("_M", bound=Message)


@dataclass_transform(frozen_default=True)
def _message(type_number: int, layout: str) -> Callable[[type[_M]], type[_M]]:
    def register(cls: type[_M]) -> type[_M]:
        cls = dataclass(frozen=True, slots=True)(cls)
        if type_number in MESSAGE_TYPES:
            raise TypeError(f"duplicate 9P type {type_number}: {cls.__name__} "
                            f"and {MESSAGE_TYPES[type_number].__name__}")
        if len(layout) != len(fields(cls)):  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__}: layout {layout!r} does not match its fields")
        cls.type = type_number
        cls._layout = layout
        MESSAGE_TYPES[type_number] = cls
        return cls
    return register


# --- messages ---------------------------------------------------------------

@_message(7, "i")
class Rlerror(Message):
    ecode: int


@_message(8, "i")
class Tstatfs(Message):
    fid: int


@_message(9, "iiqqqqqqi")
class Rstatfs(Message):
    fstype: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int
    namelen: int


@_message(12, "ii")
class Tlopen(Message):
    fid: int
    flags: int


@_message(13, "Qi")
class Rlopen(Message):
    qid: Qid
    iounit: int


@_message(14, "isiii")
class Tlcreate(Message):
    fid: int
    name: str
    flags: int
    mode: int
    gid: int


@_message(15, "Qi")
class Rlcreate(Message):
    qid: Qid
    iounit: int


@_message(16, "issi")
class Tsymlink(Message):
    fid: int
    name: str
    symtgt: str
    gid: int


@_message(17, "Q")
class Rsymlink(Message):
    qid: Qid


@_message(18, "isiiii")
class Tmknod(Message):
    dfid: int
    name: str
    mode: int
    major: int
    minor: int
    gid: int


@_message(19, "Q")
class Rmknod(Message):
    qid: Qid


@_message(20, "iis")
class Trename(Message):
    fid: int
    dfid: int
    name: str


@_message(21, "")
class Rrename(Message):
    pass


@_message(22, "i")
class Treadlink(Message):
    fid: int


@_message(23, "s")
class Rreadlink(Message):
    target: str


@_message(24, "iq")
class Tgetattr(Message):
    fid: int
    request_mask: int


@_message(25, "qQiii" + "q" * 5 + "tq" * 4 + "qq")
class Rgetattr(Message):
    valid: int
    qid: Qid
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime_sec: int
    atime_nsec: int
    mtime_sec: int
    mtime_nsec: int
    ctime_sec: int
    ctime_nsec: int
    btime_sec: int
    btime_nsec: int
    gen: int
    data_version: int


@_message(26, "iiiiiqtqtq")
class Tsetattr(Message):
    fid: int
    valid: int
    mode: int
    uid: int
    gid: int
    size: int
    atime_sec: int
    atime_nsec: int
    mtime_sec: int
    mtime_nsec: int


@_message(27, "")
class Rsetattr(Message):
    pass


@_message(30, "iis")
class Txattrwalk(Message):
    fid: int
    newfid: int
    name: str


@_message(31, "q")
class Rxattrwalk(Message):
    size: int


@_message(32, "isqi")
class Txattrcreate(Message):
    fid: int
    name: str
    attr_size: int
    flags: int


@_message(33, "")
class Rxattrcreate(Message):
    pass


@_message(40, "iqi")
class Treaddir(Message):
    fid: int
    offset: int
    count: int


@_message(41, "D")
class Rreaddir(Message):
    data: bytes


@_message(50, "ii")
class Tfsync(Message):
    fid: int
    datasync: int


@_message(51, "")
class Rfsync(Message):
    pass


@_message(52, "ibiqqis")
class Tlock(Message):
    fid: int
    lock_type: int
    flags: int
    start: int
    length: int
    proc_id: int
    client_id: str


@_message(53, "b")
class Rlock(Message):
    status: int


@_message(54, "ibqqis")
class Tgetlock(Message):
    fid: int
    lock_type: int
    start: int
    length: int
    proc_id: int
    client_id: str


@_message(55, "bqqis")
class Rgetlock(Message):
    lock_type: int
    start: int
    length: int
    proc_id: int
    client_id: str


@_message(70, "iis")
class Tlink(Message):
    dfid: int
    fid: int
    name: str


@_message(71, "")
class Rlink(Message):
    pass


@_message(72, "isii")
class Tmkdir(Message):
    dfid: int
    name: str
    mode: int
    gid: int


@_message(73, "Q")
class Rmkdir(Message):
    qid: Qid


@_message(74, "isis")
class Trenameat(Message):
    olddirfid: int
    oldname: str
    newdirfid: int
    newname: str


@_message(75, "")
class Rrenameat(Message):
    pass


@_message(76, "isi")
class Tunlinkat(Message):
    dirfid: int
    name: str
    flags: int


@_message(77, "")
class Runlinkat(Message):
    pass


@_message(100, "is")
class Tversion(Message):
    msize: int
    version: str


@_message(101, "is")
class Rversion(Message):
    msize: int
    version: str


@_message(102, "issi")
class Tauth(Message):
    afid: int
    uname: str
    aname: str
    n_uname: int


@_message(103, "Q")
class Rauth(Message):
    aqid: Qid


@_message(104, "iissi")
class Tattach(Message):
    fid: int
    afid: int
    uname: str
    aname: str
    n_uname: int


@_message(105, "Q")
class Rattach(Message):
    qid: Qid


@_message(107, "s")
class Rerror(Message):
    ename: str


@_message(108, "h")
class Tflush(Message):
    oldtag: int


@_message(109, "")
class Rflush(Message):
    pass


@_message(110, "iiW")
class Twalk(Message):
    fid: int
    newfid: int
    wnames: tuple[str, ...]


@_message(111, "X")
class Rwalk(Message):
    qids: tuple[Qid, ...]


# 9P2000 / 9P2000.u only: decoded so that a legacy client gets a clear
# answer rather than a dropped connection.

@_message(112, "ib")
class Topen(Message):
    fid: int
    mode: int


@_message(113, "Qi")
class Ropen(Message):
    qid: Qid
    iounit: int


@_message(114, "isib")
class Tcreate(Message):
    fid: int
    name: str
    perm: int
    mode: int


@_message(115, "Qi")
class Rcreate(Message):
    qid: Qid
    iounit: int


@_message(116, "iqi")
class Tread(Message):
    fid: int
    offset: int
    count: int


@_message(117, "D")
class Rread(Message):
    data: bytes | memoryview


@_message(118, "iqD")
class Twrite(Message):
    fid: int
    offset: int
    data: bytes | memoryview


@_message(119, "i")
class Rwrite(Message):
    count: int


@_message(120, "i")
class Tclunk(Message):
    fid: int


@_message(121, "")
class Rclunk(Message):
    pass


@_message(122, "i")
class Tremove(Message):
    fid: int


@_message(123, "")
class Rremove(Message):
    pass


@_message(124, "i")
class Tstat(Message):
    fid: int


@_message(125, "S")
class Rstat(Message):
    stat: bytes


@_message(126, "iS")
class Twstat(Message):
    fid: int
    stat: bytes


@_message(127, "")
class Rwstat(Message):
    pass


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


def _encode_string(value: str) -> bytes:
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
    env: dict[str, Any] = {"_HEADER": _HEADER, "_U16": _U16, "_U32": _U32,
                           "_QID": _QID, "_str": _encode_string, "T": cls.type}
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
              "    parts[0] = _HEADER.pack(size, T, tag)",
              "    return b''.join(parts)"]
    exec("\n".join(lines), env)
    return env["encode"]  # type: ignore[no-any-return]


_DECODERS = {t: _compile_decoder(c) for t, c in MESSAGE_TYPES.items()}
_ENCODERS = {c: _compile_encoder(c) for c in MESSAGE_TYPES.values()}


def encode(tag: int, msg: Message | Encoded) -> bytes:
    """Return the whole frame for ``msg`` with ``tag``."""
    if type(msg) is Encoded:
        return _HEADER.pack(HEADER_SIZE + len(msg.body), msg.type, tag) + msg.body
    try:
        return _ENCODERS[type(msg)](tag, msg)  # type: ignore[index,arg-type]
    except struct.error as exc:
        raise EncodeError(f"{type(msg).__name__}: {exc}") from None


def rread_header(tag: int, count: int) -> bytes:
    """The 11 bytes that precede ``count`` bytes of Rread data (for scatter writes)."""
    return _HEADER.pack(HEADER_SIZE + 4 + count, Rread.type, tag) + _U32.pack(count)


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
    size, msg_type, tag = _HEADER.unpack_from(frame, 0)
    if size != len(frame):
        raise DecodeError(f"size field {size} does not match frame length {len(frame)}")
    if msg_type not in _DECODERS:
        raise DecodeError(f"unknown message type {msg_type}")
    return tag, decode_body(msg_type, frame, HEADER_SIZE, size)


def pack_dirent(qid: Qid, offset: int, dtype: int, name: str) -> bytes:
    """One Rreaddir entry: qid, the cookie resuming after it, DT_* type, name."""
    return _DIRENT_FIXED.pack(qid.type, qid.version, qid.path, offset, dtype) + _encode_string(name)


def _export_message_names() -> None:
    for cls in MESSAGE_TYPES.values():
        __all__.append(cls.__name__)


_export_message_names()
