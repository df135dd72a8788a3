"""Extended attributes: in the inode's extra space (256-byte inodes) and in a shared xattr block."""

from __future__ import annotations

import errno
import struct

__all__ = [
    "XATTR_MAGIC",
    "decode_area",
    "encode_area",
    "encode_block",
    "fits_a_block",
    "full_name",
    "split_name",
]

XATTR_MAGIC = 0xEA020000
_ENTRY = struct.Struct("<BBHIII")  # name_len, name_index, value_offs, value_inum, size, hash
_HEADER = struct.Struct("<IIII")  # magic, refcount, blocks, hash (then checksum, reserved)
_HEADER_SIZE = 32
_PREFIXES = [(2, "system.posix_acl_access", True), (3, "system.posix_acl_default", True),
             (8, "system.richacl", True), (1, "user.", False), (4, "trusted.", False),
             (6, "security.", False), (7, "system.", False)]
_BY_INDEX = {index: prefix for index, prefix, _ in _PREFIXES}
XATTR_NAME_MAX = 255
Attrs = dict[str, bytes]


def split_name(name: str) -> tuple[int, bytes]:
    """(name index, stored suffix) for a full attribute name, with Linux's errnos:
    ERANGE for an empty name or one over 255 bytes (setxattr's copy of the name),
    EINVAL for a bare prefix (xattr_resolve_name) or a NUL (a C string ends
    there), EOPNOTSUPP when no prefix fits."""
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > XATTR_NAME_MAX:
        raise OSError(errno.ERANGE, "attribute name empty or longer than 255 bytes", name)
    if "\0" in name:
        raise OSError(errno.EINVAL, "NUL byte in an attribute name", name)
    for index, prefix, whole in _PREFIXES:
        if whole and name == prefix:
            return index, b""
        if not whole and name.startswith(prefix):
            if len(name) == len(prefix):
                raise OSError(errno.EINVAL, "attribute name is only a prefix", name)
            return index, raw[len(prefix):]
    raise OSError(errno.EOPNOTSUPP, "attribute namespace not supported", name)


def full_name(index: int, suffix: bytes) -> str | None:
    prefix = _BY_INDEX.get(index)
    return None if prefix is None else prefix + suffix.decode("utf-8", "surrogateescape")


def _entry_len(suffix: bytes) -> int:
    return (_ENTRY.size + len(suffix) + 3) & ~3


def _value_len(value: bytes) -> int:
    return (len(value) + 3) & ~3


def fits_a_block(suffix: bytes, size: int, block_size: int) -> bool:
    """Whether one attribute could fit an empty xattr block (header and the 4-byte
    end marker besides): Linux's ext2_xattr_set answers ERANGE when it cannot."""
    return _entry_len(suffix) + ((size + 3) & ~3) <= block_size - _HEADER_SIZE - 4


def _s32(c: int) -> int:
    return c - 256 if c > 127 else c  # e2fsprogs and older kernels hash the name as signed char


def entry_hash(suffix: bytes, value: bytes) -> int:
    h = 0
    for c in suffix:
        h = ((h << 5) ^ (h >> 27) ^ _s32(c)) & 0xFFFFFFFF
    padded = value + bytes(_value_len(value) - len(value))
    for (word,) in struct.iter_unpack("<I", padded):
        h = ((h << 16) ^ (h >> 16) ^ word) & 0xFFFFFFFF
    return h


def _sort_key(item: tuple[int, bytes, bytes]) -> tuple[int, int, bytes]:
    return item[0], len(item[1]), item[1]  # the kernel's order: it stops searching early


def decode_area(buf: bytes | bytearray, start: int, end: int, base: int) -> Attrs:
    """Attributes of entries from ``start`` up to ``end``; value offsets count from ``base``."""
    out: Attrs = {}
    off = start
    while off + 4 <= end and struct.unpack_from("<I", buf, off)[0]:
        if off + _ENTRY.size > end:
            break
        name_len, index, value_offs, inum, size, _ = _ENTRY.unpack_from(buf, off)
        suffix = bytes(buf[off + _ENTRY.size:off + _ENTRY.size + name_len])
        name = full_name(index, suffix)
        if name is not None and not inum:
            out[name] = bytes(buf[base + value_offs:base + value_offs + size])
        off += _entry_len(suffix)
    return out


def _layout(items: list[tuple[int, bytes, bytes]], size: int, first: int,
            value_base: int) -> bytearray | None:
    """Entries from ``first``, values packed down from ``size``; None if they do not fit."""
    buf = bytearray(size)
    off, vend = first, size
    for index, suffix, value in items:
        vend -= _value_len(value)
        if off + _entry_len(suffix) + 4 > vend:
            return None
        buf[vend:vend + len(value)] = value
        _ENTRY.pack_into(buf, off, len(suffix), index, vend - value_base if value else 0, 0,
                         len(value), entry_hash(suffix, value))
        buf[off + _ENTRY.size:off + _ENTRY.size + len(suffix)] = suffix
        off += _entry_len(suffix)
    return buf


def encode_area(items: list[tuple[int, bytes, bytes]], size: int) -> bytearray | None:
    """The in-inode area (magic first, value offsets after it) of ``size`` bytes, or None."""
    if size < 8:
        return None
    body = _layout(sorted(items, key=_sort_key), size - 4, 0, 0)
    if body is None:
        return None
    return bytearray(struct.pack("<I", XATTR_MAGIC)) + body


def encode_block(items: list[tuple[int, bytes, bytes]], size: int,
                 refcount: int = 1) -> bytearray | None:
    """An xattr block holding ``items``, or None if they do not fit."""
    items = sorted(items, key=_sort_key)
    buf = _layout(items, size, _HEADER_SIZE, 0)
    if buf is None:
        return None
    h, off = 0, _HEADER_SIZE
    for _index, suffix, _value in items:
        e_hash = _ENTRY.unpack_from(buf, off)[5]
        h = ((h << 16) ^ (h >> 16) ^ e_hash) & 0xFFFFFFFF
        off += _entry_len(suffix)
    _HEADER.pack_into(buf, 0, XATTR_MAGIC, refcount, 1, h)
    return buf
