"""One ext2 inode: decoded fields over the raw on-disk bytes (unknown fields survive)."""

from __future__ import annotations

import errno
import os
import stat
import struct

__all__ = ["EXT2_INDEX_FL", "N_BLOCKS", "Inode", "check_id", "decode_rdev", "encode_rdev"]

N_BLOCKS = 15  # 12 direct, single, double, triple indirect
EXT2_INDEX_FL = 0x1000
EXT4_EXTENTS_FL = 0x80000
EXT4_HUGE_FILE_FL = 0x40000

_BASE = struct.Struct("<HHIIIIIHHII4x15II")  # mode..i_block..generation
_TAIL = struct.Struct("<IIxxxxHHHH")  # file_acl, size_high, faddr, blocks_hi, acl_hi, uid/gid hi
_EXTRA_TIMES = struct.Struct("<III")  # ctime_extra, mtime_extra, atime_extra (at 132)
_CRTIME = struct.Struct("<II")  # crtime, crtime_extra (at 144)


_NS = 1_000_000_000
_S32_MIN, _S32_MAX = -(1 << 31), (1 << 31) - 1
_EPOCHS = 3 << 32  # the extra fields' two epoch bits (ext4's EXT4_EXTRA_TIMESTAMP_MAX: 2446)
_NO_ID = 0xFFFFFFFF  # Linux's INVALID_UID / INVALID_GID


def check_id(value: int) -> None:
    """EINVAL for an owner the inode cannot hold (two 16-bit halves), or Linux's -1."""
    if not 0 <= value < _NO_ID:
        raise OSError(errno.EINVAL, f"uid or gid {value} out of range")


def _to_ns(lo: int, extra: int | None) -> int:
    sec = lo - (1 << 32) if lo & 0x80000000 else lo
    if extra is None:
        return sec * 1_000_000_000
    return (sec + ((extra & 3) << 32)) * 1_000_000_000 + (extra >> 2)


def _from_ns(ns: int) -> tuple[int, int]:
    sec, nsec = divmod(ns, 1_000_000_000)
    lo = sec & 0xFFFFFFFF
    signed = lo - (1 << 32) if lo & 0x80000000 else lo
    epoch = ((sec - signed) >> 32) & 3
    return lo, epoch | (nsec << 2)


def decode_rdev(blocks: list[int]) -> int:
    """A device number from i_block: old 16-bit form in [0], new form in [1]."""
    if blocks[0]:
        return os.makedev((blocks[0] >> 8) & 0xFF, blocks[0] & 0xFF)
    new = blocks[1]
    return os.makedev((new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00))


def encode_rdev(rdev: int) -> tuple[int, int]:
    """(i_block[0], i_block[1]) for a device number, as the kernel's ext2 stores it.

    EINVAL for a number the format cannot hold: the new encoding (the kernel's
    new_encode_dev) fits a 12-bit major and a 20-bit minor, which is all a
    Linux dev_t can name (glibc's mknod answers EINVAL for a dev_t wider than
    32 bits, the kernel's new_valid_dev for the rest).
    """
    if not 0 <= rdev < 1 << 64:
        raise OSError(errno.EINVAL, f"device number {rdev} out of range")
    major, minor = os.major(rdev), os.minor(rdev)
    if major >= 1 << 12 or minor >= 1 << 20:
        raise OSError(errno.EINVAL, f"device {major}:{minor} does not fit ext2's 12-bit "
                      "major and 20-bit minor")
    if major < 256 and minor < 256:
        return (major << 8) | minor, 0
    return 0, (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


class Inode:
    """Decoded inode fields; ``pack`` folds them back into ``raw``."""

    __slots__ = (
        "__weakref__",
        "atime_ns",
        "block",
        "blocks",
        "crtime_ns",
        "ctime_ns",
        "dead",
        "disk_links",
        "dtime",
        "file_acl",
        "flags",
        "generation",
        "gid",
        "ino",
        "links",
        "mode",
        "mtime_ns",
        "raw",
        "size",
        "uid",
    )

    atime_ns: int
    block: list[int]
    blocks: int
    crtime_ns: int
    ctime_ns: int
    dead: bool  # released: its number and blocks are (being) given back
    disk_links: int
    dtime: int
    file_acl: int
    flags: int
    generation: int
    gid: int
    ino: int
    links: int
    mode: int
    mtime_ns: int
    raw: bytearray
    size: int
    uid: int

    def __init__(self, ino: int, raw: bytes | bytearray) -> None:
        self.ino = ino
        self.raw = bytearray(raw)
        (mode, uid, size_lo, atime, ctime, mtime, self.dtime, gid, self.links, blocks_lo,
         self.flags, *block, self.generation) = _BASE.unpack_from(raw, 0)
        self.block = block
        self.disk_links = self.links  # as last written: checkpoints order by the change
        self.dead = False
        file_acl, size_hi, blocks_hi, acl_hi, uid_hi, gid_hi = _TAIL.unpack_from(raw, 104)
        self.mode = mode
        self.uid, self.gid = uid | uid_hi << 16, gid | gid_hi << 16
        # A directory's i_size_high was i_dir_acl in ext2: never part of its size.
        self.size = size_lo if stat.S_ISDIR(mode) else size_lo | size_hi << 32
        self.blocks = blocks_lo | blocks_hi << 32
        self.file_acl = file_acl | acl_hi << 32
        extra = self.extra_isize
        c_x, m_x, a_x = _EXTRA_TIMES.unpack_from(raw, 132) if extra >= 16 else (None,) * 3
        self.ctime_ns, self.mtime_ns = _to_ns(ctime, c_x), _to_ns(mtime, m_x)
        self.atime_ns = _to_ns(atime, a_x)
        self.crtime_ns = 0
        if extra >= 24:
            cr, cr_x = _CRTIME.unpack_from(raw, 144)
            self.crtime_ns = _to_ns(cr, cr_x)

    @property
    def extra_isize(self) -> int:
        if len(self.raw) <= 128:
            return 0
        value: int = struct.unpack_from("<H", self.raw, 128)[0]
        return value

    def pack(self) -> bytes:
        """The raw inode with every decoded field written back."""
        raw = self.raw
        extra = self.extra_isize
        (a, a_x), (c, c_x), (m, m_x) = (_from_ns(self.atime_ns), _from_ns(self.ctime_ns),
                                        _from_ns(self.mtime_ns))
        _BASE.pack_into(raw, 0, self.mode, self.uid & 0xFFFF, self.size & 0xFFFFFFFF, a, c, m,
                        self.dtime, self.gid & 0xFFFF, self.links, self.blocks & 0xFFFFFFFF,
                        self.flags, *self.block, self.generation)
        _TAIL.pack_into(raw, 104, self.file_acl & 0xFFFFFFFF,
                        0 if stat.S_ISDIR(self.mode) else self.size >> 32,
                        (self.blocks >> 32) & 0xFFFF, (self.file_acl >> 32) & 0xFFFF,
                        self.uid >> 16, self.gid >> 16)
        if extra >= 16:
            _EXTRA_TIMES.pack_into(raw, 132, c_x, m_x, a_x)
        if extra >= 24:
            _CRTIME.pack_into(raw, 144, *_from_ns(self.crtime_ns))
        return bytes(raw)

    def clamp_times(self) -> None:
        """Clamp atime and mtime to what this inode stores, as Linux's timestamp_truncate
        clamps to s_time_min/s_time_max: signed 32-bit seconds, plus two epoch bits
        where the inode has the extra time fields (else a far time would wrap)."""
        low = _S32_MIN * _NS
        high = (_S32_MAX + (_EPOCHS if self.extra_isize >= 16 else 0)) * _NS + _NS - 1
        self.atime_ns = min(max(self.atime_ns, low), high)
        self.mtime_ns = min(max(self.mtime_ns, low), high)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def is_fast_symlink(self, block_size: int) -> bool:
        """A symlink whose target lives in i_block (no data block besides an xattr block)."""
        ea_sectors = block_size // 512 if self.file_acl else 0
        return stat.S_ISLNK(self.mode) and self.blocks - ea_sectors == 0
