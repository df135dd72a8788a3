"""Reading and storing an inode's xattrs: in-inode first, the rest in a refcounted block."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from .inode import Inode
from .layout import COMPAT_EXT_ATTR
from .xattr import XATTR_MAGIC, decode_area, encode_area, encode_block, split_name

if TYPE_CHECKING:
    from .fs import FileSystem

__all__ = ["drop_block", "load", "store"]

_REFCOUNT_AT = 4
Item = tuple[int, bytes, bytes]


def _area(fs: FileSystem, inode: Inode) -> tuple[int, int]:
    """(start, size) of the in-inode xattr area (magic included); size 0 if there is none."""
    extra = inode.extra_isize
    if fs.inode_size <= 128 or not extra:
        return 0, 0
    start = 128 + extra
    return start, max(fs.inode_size - start, 0)


def load(fs: FileSystem, inode: Inode) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    start, size = _area(fs, inode)
    if size >= 8 and struct.unpack_from("<I", inode.raw, start)[0] == XATTR_MAGIC:
        out.update(decode_area(inode.raw, start + 4, start + size, start + 4))
    if inode.file_acl:
        buf = fs.image.block(inode.file_acl)
        if struct.unpack_from("<I", buf, 0)[0] != XATTR_MAGIC:
            raise OSError(errno.EIO, f"inode {inode.ino}: bad xattr block {inode.file_acl}")
        out.update(decode_area(buf, 32, fs.block_size, 0))
    return out


def _split(fs: FileSystem, items: list[Item], size: int) -> tuple[list[Item], list[Item]]:
    """Items that fit in the inode (greedily, smallest first), and the rest."""
    inside: list[Item] = []
    rest: list[Item] = []
    for item in sorted(items, key=lambda i: len(i[1]) + len(i[2])):
        if size and encode_area([*inside, item], size) is not None:
            inside.append(item)
        else:
            rest.append(item)
    return inside, rest


def store(fs: FileSystem, inode: Inode, attrs: dict[str, bytes]) -> None:
    """Write ``attrs`` as the inode's whole set of xattrs; ENOSPC changes nothing."""
    _enable_feature(fs)
    items = [(*split_name(name), value) for name, value in attrs.items()]
    start, size = _area(fs, inode)
    inside, rest = _split(fs, items, size)
    block = encode_block(rest, fs.block_size) if rest else None
    if rest and block is None:
        raise OSError(errno.ENOSPC, "extended attributes do not fit in one block")
    if block is not None:
        _store_block(fs, inode, block)
    else:
        drop_block(fs, inode)
    if size:
        area = encode_area(inside, size) if inside else None
        inode.raw[start:start + size] = area if area is not None else bytes(size)
    fs.dirty(inode)


def _enable_feature(fs: FileSystem) -> None:
    """Turn on ext_attr at the first xattr, as the kernel does; revision 0 has no features."""
    sb = fs.sb
    if sb.has(compat=COMPAT_EXT_ATTR):
        return
    if sb.get("rev_level") == 0:
        raise OSError(errno.EOPNOTSUPP, "no extended attributes on a revision 0 file system")
    sb.set("feature_compat", sb.get("feature_compat") | COMPAT_EXT_ATTR)


def _store_block(fs: FileSystem, inode: Inode, block: bytearray) -> None:
    old = inode.file_acl
    if old:
        buf = fs.image.block(old)
        if struct.unpack_from("<I", buf, _REFCOUNT_AT)[0] <= 1:
            buf[:] = block
            fs.image.touch(old)
            return
    new = fs.alloc.alloc_run(fs.goal(inode), 1)[0]  # ENOSPC here changes nothing
    drop_block(fs, inode)  # a shared block stays with its other users: copy on write
    fs.image.new_block(new)[:] = block
    inode.file_acl = new
    inode.blocks += fs.block_size // 512


def drop_block(fs: FileSystem, inode: Inode) -> None:
    """Stop using the inode's xattr block: free it, or just count one user less if shared."""
    old = inode.file_acl
    if not old:
        return
    buf = fs.image.block(old)
    refs = struct.unpack_from("<I", buf, _REFCOUNT_AT)[0]
    if refs <= 1:
        fs.alloc.free_block(old)
    else:
        struct.pack_into("<I", buf, _REFCOUNT_AT, refs - 1)
        fs.image.touch(old)
    inode.file_acl = 0
    inode.blocks -= fs.block_size // 512
