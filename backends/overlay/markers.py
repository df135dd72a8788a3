"""How the overlay marks whiteouts, opaque directories and copy-up origins in its upper layer."""

from __future__ import annotations

import errno
import stat

from ninep.vfs.node import Node

__all__ = [
    "OPAQUE_XATTR",
    "ORIGIN_XATTR",
    "WORK_DIR",
    "is_opaque",
    "is_private_xattr",
    "is_whiteout",
    "make_whiteout",
    "read_origin",
    "set_opaque",
    "walk_or_none",
    "write_origin",
]

# overlayfs with the userxattr mount option uses user.overlay.*: an upper directory
# written by this backend keeps its whiteouts and opaque directories for the kernel too.
OPAQUE_XATTR = "user.overlay.opaque"
# Our own: the overlay inode number a copied-up file keeps (overlayfs stores a file
# handle in user.overlay.origin; a different name keeps the kernel from misreading ours).
ORIGIN_XATTR = "user.overlay.ninep.origin"
_PRIVATE_PREFIXES = ("user.overlay.", "trusted.overlay.")
WORK_DIR = ".overlay-work"  # in the upper root: where file copy-ups are assembled


def is_private_xattr(name: str) -> bool:
    """An attribute the overlay keeps for itself, hidden from clients as overlayfs does."""
    return name.startswith(_PRIVATE_PREFIXES)


async def walk_or_none(directory: Node, name: str) -> Node | None:
    """The child ``name`` of ``directory``, or None when there is none."""
    try:
        return await directory.walk(name)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


async def is_whiteout(node: Node) -> bool:
    """A whiteout is overlayfs's: a character device numbered 0/0."""
    attr = node.peek_attr() or await node.getattr()
    return stat.S_ISCHR(attr.mode) and attr.rdev == 0


async def make_whiteout(directory: Node, name: str) -> None:
    # Linux (since 5.8) lets anyone make a 0/0 character device, for exactly this use.
    await directory.mknod(name, stat.S_IFCHR, 0, 0, 0)


async def is_opaque(directory: Node) -> bool:
    try:
        return await directory.xattr_get(OPAQUE_XATTR) == b"y"
    except OSError:
        return False


async def set_opaque(directory: Node) -> None:
    await directory.xattr_set(OPAQUE_XATTR, b"y", 0)


async def read_origin(node: Node) -> int | None:
    """The overlay inode number recorded on a copied-up file, if any."""
    try:
        value = await node.xattr_get(ORIGIN_XATTR)
    except OSError:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def write_origin(node: Node, ino: int) -> bool:
    """Record ``ino`` on ``node``; False when the upper layer cannot store it."""
    try:
        await node.xattr_set(ORIGIN_XATTR, str(ino).encode(), 0)
    except OSError:
        return False
    return True
