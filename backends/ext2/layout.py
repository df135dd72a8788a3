"""The on-disk ext2 structures: superblock, group descriptors, feature flags."""

from __future__ import annotations

import struct

__all__ = [
    "COMPAT_EXT_ATTR",
    "COMPAT_HAS_JOURNAL",
    "EXT2_MAGIC",
    "INCOMPAT_FILETYPE",
    "INCOMPAT_RECOVER",
    "RO_COMPAT_LARGE_FILE",
    "GroupDesc",
    "Superblock",
    "feature_names",
    "unsupported_features",
]

EXT2_MAGIC = 0xEF53
STATE_VALID, STATE_ERRORS = 1, 2
GOOD_OLD_REV, GOOD_OLD_INODE_SIZE, GOOD_OLD_FIRST_INO = 0, 128, 11

COMPAT = {0x1: "dir_prealloc", 0x2: "imagic_inodes", 0x4: "has_journal", 0x8: "ext_attr",
          0x10: "resize_inode", 0x20: "dir_index", 0x40: "lazy_bg", 0x80: "exclude_inode",
          0x100: "exclude_bitmap", 0x200: "sparse_super2", 0x400: "fast_commit",
          0x800: "stable_inodes", 0x1000: "orphan_file"}
INCOMPAT = {0x1: "compression", 0x2: "filetype", 0x4: "needs_recovery", 0x8: "journal_dev",
            0x10: "meta_bg", 0x40: "extent", 0x80: "64bit", 0x100: "mmp", 0x200: "flex_bg",
            0x400: "ea_inode", 0x1000: "dirdata", 0x2000: "metadata_csum_seed",
            0x4000: "large_dir", 0x8000: "inline_data", 0x10000: "encrypt",
            0x20000: "casefold"}
RO_COMPAT = {0x1: "sparse_super", 0x2: "large_file", 0x4: "btree_dir", 0x8: "huge_file",
             0x10: "uninit_bg", 0x20: "dir_nlink", 0x40: "extra_isize", 0x80: "has_snapshot",
             0x100: "quota", 0x200: "bigalloc", 0x400: "metadata_csum", 0x800: "replica",
             0x1000: "read-only", 0x2000: "project", 0x4000: "shared_blocks",
             0x8000: "verity", 0x10000: "orphan_present"}

COMPAT_HAS_JOURNAL, COMPAT_EXT_ATTR, COMPAT_DIR_INDEX = 0x4, 0x8, 0x20
INCOMPAT_FILETYPE, INCOMPAT_RECOVER = 0x2, 0x4
RO_COMPAT_SPARSE_SUPER, RO_COMPAT_LARGE_FILE = 0x1, 0x2

# What this backend reads (any compat feature is readable by definition): ext4's
# extents, 64-bit descriptors and checksums too (checksums are not verified) ...
READ_INCOMPAT = 0x2 | 0x40 | 0x80 | 0x100 | 0x200 | 0x2000 | 0x4000
READ_RO_COMPAT = (0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x400 | 0x1000
                  | 0x2000 | 0x10000)
INCOMPAT_64BIT = 0x80
# ... and what it can change without breaking: flex_bg only moves metadata, whose
# places the group descriptors give anyway; a clean journal is left alone (as the
# kernel's ext2 driver does with an ext3 file system).
WRITE_COMPAT = 0x1 | 0x4 | 0x8 | 0x10 | 0x20
WRITE_INCOMPAT = 0x2 | 0x200
WRITE_RO_COMPAT = 0x1 | 0x2 | 0x20 | 0x40

_SB_FIELDS = {  # name -> (offset, struct code)
    "inodes_count": (0, "I"), "blocks_count": (4, "I"), "r_blocks_count": (8, "I"),
    "free_blocks_count": (12, "I"), "free_inodes_count": (16, "I"),
    "first_data_block": (20, "I"), "log_block_size": (24, "I"),
    "blocks_per_group": (32, "I"), "inodes_per_group": (40, "I"), "mtime": (44, "I"),
    "wtime": (48, "I"), "mnt_count": (52, "H"), "max_mnt_count": (54, "h"),
    "magic": (56, "H"), "state": (58, "H"), "rev_level": (76, "I"), "first_ino_raw": (84, "I"),
    "inode_size_raw": (88, "H"), "feature_compat": (92, "I"), "feature_incompat": (96, "I"),
    "feature_ro_compat": (100, "I"), "reserved_gdt_blocks": (206, "H"),
    "desc_size_raw": (254, "H"), "first_meta_bg": (260, "I"), "blocks_count_hi": (336, "I"),
}


class Superblock:
    """The 1024-byte superblock, kept raw so fields this code does not know survive."""

    def __init__(self, raw: bytes) -> None:
        self.raw = bytearray(raw)

    def get(self, name: str) -> int:
        offset, code = _SB_FIELDS[name]
        value: int = struct.unpack_from("<" + code, self.raw, offset)[0]
        return value

    def set(self, name: str, value: int) -> None:
        offset, code = _SB_FIELDS[name]
        struct.pack_into("<" + code, self.raw, offset, value)

    @property
    def block_size(self) -> int:
        return 1024 << self.get("log_block_size")

    @property
    def inode_size(self) -> int:
        return GOOD_OLD_INODE_SIZE if self.get("rev_level") == GOOD_OLD_REV \
            else self.get("inode_size_raw")

    @property
    def first_ino(self) -> int:
        return GOOD_OLD_FIRST_INO if self.get("rev_level") == GOOD_OLD_REV \
            else self.get("first_ino_raw")

    @property
    def blocks_count(self) -> int:
        hi = self.get("blocks_count_hi") if self.has(incompat=INCOMPAT_64BIT) else 0
        return self.get("blocks_count") | hi << 32

    @property
    def desc_size(self) -> int:
        return max(self.get("desc_size_raw"), 32) if self.has(incompat=INCOMPAT_64BIT) else 32

    @property
    def group_count(self) -> int:
        data = self.blocks_count - self.get("first_data_block")
        return -(-data // self.get("blocks_per_group"))

    def has(self, compat: int = 0, incompat: int = 0, ro_compat: int = 0) -> bool:
        return bool(self.get("feature_compat") & compat
                    or self.get("feature_incompat") & incompat
                    or self.get("feature_ro_compat") & ro_compat)

    @property
    def hash_seed(self) -> bytes:
        return bytes(self.raw[236:252])


def feature_names(table: dict[int, str], bits: int) -> list[str]:
    """Names of the set ``bits`` (unknown ones as hex)."""
    out = []
    for bit in range(32):
        if bits & (1 << bit):
            out.append(table.get(1 << bit, f"unknown feature {1 << bit:#x}"))
    return out


def unsupported_features(sb: Superblock, writing: bool) -> list[str]:
    """The features of ``sb`` this backend cannot serve (for writing, when ``writing``)."""
    if writing:
        masks = (WRITE_COMPAT, WRITE_INCOMPAT, WRITE_RO_COMPAT)
    else:
        masks = (0xFFFFFFFF, READ_INCOMPAT, READ_RO_COMPAT)
    out = feature_names(COMPAT, sb.get("feature_compat") & ~masks[0])
    out += feature_names(INCOMPAT, sb.get("feature_incompat") & ~masks[1])
    out += feature_names(RO_COMPAT, sb.get("feature_ro_compat") & ~masks[2])
    return out


_GD = struct.Struct("<IIIHHH")


class GroupDesc:
    """One 32-byte group descriptor: where the bitmaps and inode table are, free counts."""

    __slots__ = ("block_bitmap", "free_blocks", "free_inodes", "inode_bitmap",
                 "inode_table", "raw", "used_dirs")

    def __init__(self, raw: bytes) -> None:
        self.raw = bytearray(raw)
        (self.block_bitmap, self.inode_bitmap, self.inode_table, self.free_blocks,
         self.free_inodes, self.used_dirs) = _GD.unpack_from(raw, 0)
        if len(raw) >= 64:  # 64bit: the high halves (only read: such images are served ro)
            bb_hi, ib_hi, it_hi = struct.unpack_from("<III", raw, 32)
            self.block_bitmap |= bb_hi << 32
            self.inode_bitmap |= ib_hi << 32
            self.inode_table |= it_hi << 32

    def pack(self) -> bytes:
        _GD.pack_into(self.raw, 0, self.block_bitmap, self.inode_bitmap, self.inode_table,
                      self.free_blocks, self.free_inodes, self.used_dirs)
        return bytes(self.raw)
