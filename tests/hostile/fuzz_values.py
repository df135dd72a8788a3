"""The network fuzzer's value tables and frame mutations: what tests/hostile/fuzzer.py
puts in each field of each T-message (looked up by message and field, then by field
name, then by wire letter), and how it breaks a frame's framing on purpose."""

from __future__ import annotations

import random
import stat
import struct
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from ninep.wire import constants as c
from ninep.wire import messages as m

__all__ = ["MOUNTS", "MUTATIONS", "FieldValues", "mutate_frame"]

# The fuzz namespace's mount points (tests/hostile/fuzzer.py build_fixtures).
MOUNTS = ("pt", "ptx", "tar", "ext2", "ovl", "conn", "null", "zero", "inline")
HOSTILE = 0.25  # the share of values drawn from the hostile tables


def _bounds(bits: int) -> tuple[int, ...]:
    """0, 1, 2, 2**k - 1 and 2**k for the widths that matter, and the field's maximum."""
    out = {0, 1, 2, (1 << bits) - 1}
    for k in (7, 8, 12, 15, 16, 20, 24, 31, 32, 53, 63):
        if k < bits:
            out |= {(1 << k) - 1, 1 << k}
    return tuple(sorted(out))


_UNSIGNED = {"b": _bounds(8), "h": _bounds(16), "i": _bounds(32), "q": _bounds(64)}
_SIGNED_SECONDS = (0, 1, -1, 2**31 - 1, -2**31, 2**32, 253402300799, 253402300800,
                   -62135596801, 2**62, 2**63 - 1, -2**63)
_NSEC = (0, 1, 999_999_999, 10**9, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1)
_FILE_NAMES = ("fz0", "fz1", "fz2", "fz3", "fz4", "fz5", "hello.txt", "empty", "big", "sub",
               "deep.txt", "deeper", "x", "link")
_HOSTILE_NAMES = ("", ".", "..", "/", "a/b", "../..", "\x00", "nul\x00name", "x" * 255, "y" * 256,
                  "z" * 4000, "\udcff\udcfe", "bad\udcc3(", "\u00e9" * 127, "\u00e9" * 128, "\n",
                  " ", "-", "%n%s", "\u202e")
_TARGETS = ("fz0", "sub/deep.txt", "hello.txt", "..", "../..", "/nonexistent-ninep-fuzz/x", "",
            "tgt\x00nul", "t" * 4095, "u" * 5000, "\udcff")
_UNAMES = ("", "nobody", "daemon", "u\x00x", "w" * 300, "\udcff", "no-such-user-of-the-fuzzer")
_ANAMES = ("ctl", "/", "..", "\x00", "a" * 300, "\udcff", "nonexistent")
_VERSIONS = ("9P2000", "9P2000.u", "", "9P2000.L.extra", "9P2000.\x00L", "9P" * 1000, "\udcff")
_XATTR_NAMES = ("user.fz", "user.fz2", "security.capability", "trusted.fz", "system.posix_acl_access",
                "", "user.", "\x00", "user.nul\x00", "user." + "n" * 300, "os2.fz", "user.\udcff")
_MODES = (0o644, 0o755, 0o600, 0o7777, 0, 0o4755, 0o1777, 0xFFFFFFFF, 0o170777)
_NODE_TYPES = (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK, stat.S_IFREG, 0,
               stat.S_IFDIR, stat.S_IFLNK, 0o170000)
_DEVICE_NUMBERS = (0, 1, 8, 255, 256, 4095, 4096, 2**20 - 1, 2**20, 2**24, 2**31 - 1, 2**31,
                   2**32 - 1)
_O_NONBLOCK, _O_DIRECT, _O_PATH, _O_TMPFILE = 0o4000, 0o40000, 0o10000000, 0o20200000
_OPEN_FLAGS = (c.O_RDONLY, c.O_WRONLY, c.O_RDWR, c.O_RDWR | c.O_TRUNC, c.O_WRONLY | c.O_APPEND,
               c.O_RDWR | c.O_CREAT | c.O_EXCL, c.O_RDONLY | c.O_DIRECTORY, c.O_NOFOLLOW)
_HOSTILE_OPEN_FLAGS = (c.O_ACCMODE, _O_NONBLOCK, _O_DIRECT, _O_PATH, _O_TMPFILE, 0xFFFFFFFF,
                       0x7FFFFFFF, c.O_WRONLY | c.O_DIRECTORY)
_IDS = (0, 1, 1000, 65534, 2**31 - 1, 2**31, 2**32 - 2, m.NONUNAME)
_OFFSETS = (0, 1, 100, 4096, 65536, 1 << 20, 1 << 30)
_T = TypeVar("_T")


class ConversationState(Protocol):
    """What the value tables read of one connection (tests/hostile/fuzzer.py Conversation)."""

    rng: random.Random
    fids: set[int]
    dirs: set[int]
    opened: set[int]
    opened_files: set[int]
    pending: dict[int, m.Message]
    msize: int


class FieldValues:
    """Values for T-message fields: mostly what a client would send, a quarter hostile."""

    def __init__(self, state: ConversationState) -> None:
        self.state = state
        self.rng = state.rng
        # (message, field) first, then the field's name, then its wire letter.
        self.by_message: dict[tuple[str, str], Callable[[], object]] = {
            ("Tmknod", "mode"): self.node_mode, ("Tlopen", "flags"): self.open_flags,
            ("Tlcreate", "flags"): self.open_flags, ("Tlock", "flags"): self.lock_flags,
            ("Txattrcreate", "flags"): self.xattr_flags, ("Txattrwalk", "name"): self.xattr_name,
            ("Txattrcreate", "name"): self.xattr_name, ("Tunlinkat", "flags"): self.unlink_flags,
            ("Tsetattr", "valid"): self.setattr_valid, ("Tsymlink", "symtgt"): self.target,
        }
        # Fields that want a directory, or an open file: mostly given one, so that the
        # request gets past the fid checks into the backend.
        for message, name in (("Tlcreate", "fid"), ("Tsymlink", "fid"), ("Tmknod", "dfid"),
                              ("Tmkdir", "dfid"), ("Trename", "dfid"), ("Tlink", "dfid"),
                              ("Trenameat", "olddirfid"), ("Trenameat", "newdirfid"),
                              ("Tunlinkat", "dirfid"), ("Twalk", "fid")):
            self.by_message[(message, name)] = self.dir_fid
        for message in ("Tread", "Twrite", "Tfsync", "Tlock", "Tgetlock"):
            self.by_message[(message, "fid")] = self.open_file_fid
        self.by_message[("Treaddir", "fid")] = self.open_dir_fid
        self.by_name: dict[str, Callable[[], object]] = {
            "fid": self.fid, "dfid": self.fid, "dirfid": self.fid, "olddirfid": self.fid,
            "newdirfid": self.fid, "newfid": self.newfid, "afid": self.afid,
            "name": self.name, "oldname": self.name, "newname": self.name,
            "wnames": self.wnames, "uname": self.uname, "aname": self.aname,
            "version": self.version, "client_id": self.client_id, "msize": self.msize,
            "mode": self.mode, "perm": self.mode, "major": self.device_number,
            "minor": self.device_number, "uid": self.ident, "gid": self.ident,
            "n_uname": self.n_uname, "request_mask": self.getattr_mask, "size": self.offset,
            "attr_size": self.offset, "offset": self.offset, "start": self.offset,
            "length": self.offset, "count": self.count, "lock_type": self.lock_type,
            "atime_nsec": self.nsec, "mtime_nsec": self.nsec, "oldtag": self.oldtag,
            "data": self.data, "stat": self.stat_bytes,
        }
        self.by_letter: dict[str, Callable[[], object]] = {
            letter: (lambda bounds=bounds: self.pick(bounds, bounds))  # type: ignore[misc]
            for letter, bounds in _UNSIGNED.items()}
        self.by_letter["t"] = lambda: self.pick((0, 1, 1_600_000_000), _SIGNED_SECONDS)

    def of(self, message: str, name: str, letter: str) -> object:
        make = (self.by_message.get((message, name)) or self.by_name.get(name)
                or self.by_letter[letter])
        value = make()
        if letter in _UNSIGNED and isinstance(value, int):
            return value & _UNSIGNED[letter][-1]  # a table shared by wider fields
        return value

    def pick(self, ordinary: Sequence[_T], hostile: Sequence[_T]) -> _T:
        return self.rng.choice(hostile if self.rng.random() < HOSTILE else ordinary)

    # --- fids and tags ------------------------------------------------------

    def fid(self) -> int:
        in_use = sorted(self.state.fids)
        roll = self.rng.random()
        if in_use and roll < 0.75:
            opened = sorted(self.state.opened)
            return self.rng.choice(opened if opened and roll < 0.3 else in_use)
        if roll < 0.9:
            return self.rng.randrange(64)
        return self.rng.choice((m.NOFID, 2**31, 2**32 - 2, 0))

    def dir_fid(self) -> int:
        """Mostly a directory; a fifth of the time a file or symlink the client holds,
        where a directory belongs (each backend must answer ENOTDIR)."""
        roll = self.rng.random()
        dirs = sorted(self.state.dirs)
        if dirs and roll < 0.65:
            return self.rng.choice(dirs)
        others = sorted(self.state.fids - self.state.dirs)
        return self.rng.choice(others) if others and roll < 0.85 else self.fid()

    def open_file_fid(self) -> int:
        files = sorted(self.state.opened_files)
        return self.rng.choice(files) if files and self.rng.random() < 0.7 else self.fid()

    def open_dir_fid(self) -> int:
        dirs = sorted(self.state.opened - self.state.opened_files)
        return self.rng.choice(dirs) if dirs and self.rng.random() < 0.7 else self.fid()

    def newfid(self) -> int:
        roll = self.rng.random()
        if roll < 0.75:
            return self.rng.choice([f for f in range(64, 128) if f not in self.state.fids] or [64])
        return self.fid() if roll < 0.9 else self.rng.choice((m.NOFID, 2**32 - 2))

    def afid(self) -> int:
        return m.NOFID if self.rng.random() < 0.8 else self.fid()

    def oldtag(self) -> int:
        if self.state.pending and self.rng.random() < 0.6:
            return self.rng.choice(sorted(self.state.pending))
        return self.rng.choice((0, 1, self.rng.randrange(0xFFFF), m.NOTAG))

    # --- strings ------------------------------------------------------------

    def name(self) -> str:
        return self.pick(_FILE_NAMES, _HOSTILE_NAMES)

    def known_name(self) -> str:
        return self.rng.choice(_FILE_NAMES)

    def wnames(self) -> tuple[str, ...]:
        roll = self.rng.random()
        count = (self.rng.choice((16, 17, 64, 300)) if roll < 0.05 else
                 self.rng.choice((0, 1, 1, 1, 2, 2, 3, 4)))
        words = _FILE_NAMES + MOUNTS + ("..", ".")
        return tuple(self.pick(words, _HOSTILE_NAMES) for _ in range(count))

    def target(self) -> str:
        return self.rng.choice(_TARGETS)

    def uname(self) -> str:
        if self.rng.random() < 0.3:  # a new name each time: what a credential cache keeps
            return f"fz-user-{self.rng.randrange(10**9)}"
        return self.pick(("root",), _UNAMES)

    def aname(self) -> str:
        return self.pick(("",), _ANAMES)

    def version(self) -> str:
        return self.pick((m.VERSION_9P2000L,), _VERSIONS)

    def client_id(self) -> str:
        return self.pick(("fz-client",), ("", "\x00", "c" * 300, "\udcff"))

    def xattr_name(self) -> str:
        return self.rng.choice(_XATTR_NAMES)

    # --- numbers -------------------------------------------------------------

    def msize(self) -> int:
        return self.pick((4096, 8192, 65536, 1 << 20), _UNSIGNED["i"])

    def mode(self) -> int:
        return self.pick(_MODES[:3], _MODES)

    def node_mode(self) -> int:
        return self.rng.choice(_NODE_TYPES) | self.mode()

    def device_number(self) -> int:
        return self.pick((0, 1, 8), _DEVICE_NUMBERS)

    def ident(self) -> int:
        return self.pick((0, 1000), _IDS)

    def n_uname(self) -> int:
        """NONUNAME makes the server resolve the uname itself (getpwnam)."""
        return self.pick((0, m.NONUNAME), _IDS)

    def open_flags(self) -> int:
        return self.pick(_OPEN_FLAGS, (*_HOSTILE_OPEN_FLAGS, self.rng.getrandbits(32)))

    def lock_flags(self) -> int:
        return self.pick((0, c.LOCK_FLAG_BLOCK), (2, 0xFFFFFFFF))

    def lock_type(self) -> int:
        return self.pick((c.LOCK_RDLCK, c.LOCK_WRLCK, c.LOCK_UNLCK), (3, 0x7F, 0xFF))

    def xattr_flags(self) -> int:
        return self.pick((0, c.XATTR_CREATE, c.XATTR_REPLACE), (3, 4, 0xFFFFFFFF))

    def unlink_flags(self) -> int:
        return self.pick((0, c.AT_REMOVEDIR), (1, 0xFFFFFFFF))

    def setattr_valid(self) -> int:
        return self.pick((c.SETATTR_MODE, c.SETATTR_SIZE, c.SETATTR_MTIME | c.SETATTR_MTIME_SET,
                          c.SETATTR_UID | c.SETATTR_GID),
                         (self.rng.getrandbits(9), 0x1FF, 0xFFFFFFFF, 0))

    def getattr_mask(self) -> int:
        return self.pick((c.GETATTR_BASIC, c.GETATTR_ALL), (0, 2**64 - 1))

    def offset(self) -> int:
        return self.pick(_OFFSETS, _UNSIGNED["q"])

    def count(self) -> int:
        msize = self.state.msize
        return self.pick((24, 400, 4096, msize - m.IOHDRSZ),
                         (0, 1, msize, msize + 1, 2**31, 2**32 - 1))

    def nsec(self) -> int:
        return self.pick((0, 500_000_000), _NSEC)

    # --- payloads --------------------------------------------------------------

    def data(self) -> bytes:
        size = self.pick((0, 1, 17, 512, 4096), (self.state.msize - 23, 65536, 3))
        return self.rng.randbytes(size) if size <= 4096 else b"\xa5" * size

    def stat_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((0, 2, 49, 100)))


# --- frame mutations: each may leave the framing out of step, so it ends a connection

MUTATIONS = ("short size", "long size", "over msize", "under header", "truncated body",
             "trailing bytes", "unknown type", "reply type", "flipped byte")
_HEADER = struct.Struct("<IBH")
_R_TYPES = tuple(sorted(t for t, cls in m.MESSAGE_TYPES.items() if cls.__name__.startswith("R")))


def mutate_frame(frame: bytes, kind: str, rng: random.Random, msize: int) -> bytes:
    """``frame`` with a lying header or a damaged body, as ``kind`` says."""
    size, mtype, tag = _HEADER.unpack_from(frame)
    body = bytearray(frame[7:])
    if kind == "short size":
        size = rng.randint(7, max(7, size - 1))
    elif kind == "long size":
        size = min(size + rng.randint(1, 64), msize)
    elif kind == "over msize":
        size = rng.choice((msize + 1, 2**31, 2**32 - 1))
    elif kind == "under header":
        size = rng.randrange(7)
    elif kind == "truncated body":
        del body[len(body) - rng.randint(min(1, len(body)), len(body)):]
        size = 7 + len(body)
    elif kind == "trailing bytes":
        body += rng.randbytes(rng.randint(1, 16))
        size = 7 + len(body)
    elif kind == "unknown type":
        mtype = rng.choice((0, 1, 6, 99, 106, 128, 200, 255))
    elif kind == "reply type":
        mtype = rng.choice(_R_TYPES)
    elif kind == "flipped byte" and body:
        body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    return _HEADER.pack(size, mtype, tag) + bytes(body)
