"""The 9P2000.L messages as values: one frozen, slotted dataclass per message, named as
in the spec, each declaring its wire layout (the codec, codec.py, is compiled from it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, ClassVar, TypeVar, dataclass_transform

from ninep.wire.qid import Qid

__all__ = [
    "FIXED_LETTERS",
    "MESSAGE_TYPES",
    "Encoded",
    "Message",
    "Rattach",
    "Rauth",
    "Rclunk",
    "Rcreate",
    "Rerror",
    "Rflush",
    "Rfsync",
    "Rgetattr",
    "Rgetlock",
    "Rlcreate",
    "Rlerror",
    "Rlink",
    "Rlock",
    "Rlopen",
    "Rmkdir",
    "Rmknod",
    "Ropen",
    "Rread",
    "Rreaddir",
    "Rreadlink",
    "Rremove",
    "Rrename",
    "Rrenameat",
    "Rsetattr",
    "Rstat",
    "Rstatfs",
    "Rsymlink",
    "Runlinkat",
    "Rversion",
    "Rwalk",
    "Rwrite",
    "Rwstat",
    "Rxattrcreate",
    "Rxattrwalk",
    "Tattach",
    "Tauth",
    "Tclunk",
    "Tcreate",
    "Tflush",
    "Tfsync",
    "Tgetattr",
    "Tgetlock",
    "Tlcreate",
    "Tlink",
    "Tlock",
    "Tlopen",
    "Tmkdir",
    "Tmknod",
    "Topen",
    "Tread",
    "Treaddir",
    "Treadlink",
    "Tremove",
    "Trename",
    "Trenameat",
    "Tsetattr",
    "Tstat",
    "Tstatfs",
    "Tsymlink",
    "Tunlinkat",
    "Tversion",
    "Twalk",
    "Twrite",
    "Twstat",
    "Txattrcreate",
    "Txattrwalk",
]

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
FIXED_LETTERS = {"b": "B", "h": "H", "i": "I", "q": "Q", "t": "q"}  # struct codes

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

