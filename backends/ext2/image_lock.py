"""Before an image is served: its superblock's checks, and the loop devices a flock cannot stop."""

from __future__ import annotations

import logging
import os

from ..image_file import ImageFile
from .layout import (
    EXT2_MAGIC,
    INCOMPAT_RECOVER,
    STATE_ERRORS,
    STATE_VALID,
    Superblock,
    unsupported_features,
)

__all__ = ["Ext2Error", "check_no_loop", "check_servable", "loop_devices_of", "read_superblock"]

log = logging.getLogger(__name__)


class Ext2Error(ValueError):
    """The image cannot be opened as asked; the message says why."""


def loop_devices_of(fd: int, sys_block: str = "/sys/block") -> list[str]:
    """The loop devices backed by the file open as ``fd`` (the kernel may have one
    mounted; it takes no flock, so the lock cannot keep it out)."""
    st = os.fstat(fd)
    found = []
    try:
        names = sorted(os.listdir(sys_block))
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(sys_block, name, "loop", "backing_file")) as f:
                backing = f.read().rstrip("\n")
            other = os.stat(backing.removesuffix(" (deleted)"))
        except OSError:
            continue  # not a loop device, detached, or its file is gone
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            found.append(f"/dev/{name}")
    return found


def check_no_loop(fd: int, path: str, read_only: bool) -> None:
    loops = loop_devices_of(fd)
    if not loops:
        return
    where = ", ".join(loops)
    if read_only:
        log.warning("%s: the image is attached to %s; if the kernel writes to it, what is "
                    "served may be inconsistent", path, where)
        return
    raise Ext2Error(f"{path}: the image is attached to {where} (the kernel may have it "
                    "mounted); detach it with 'losetup -d' or serve it read-only (,ro)")


def read_superblock(file: ImageFile, path: str) -> Superblock:
    raw = file.pread(1024, 1024)
    if len(raw) < 1024:
        raise Ext2Error(f"{path}: too short to be an ext2 image")
    sb = Superblock(raw)
    if sb.get("magic") != EXT2_MAGIC:
        raise Ext2Error(f"{path}: not an ext2 image (bad superblock magic)")
    if sb.get("log_block_size") > 6 or not sb.get("blocks_per_group") \
            or not sb.get("inodes_per_group"):
        raise Ext2Error(f"{path}: corrupt superblock")
    return sb


def check_servable(sb: Superblock, path: str, read_only: bool, force: bool) -> None:
    """Ext2Error unless this backend may serve the image as asked (features, state)."""
    if sb.has(incompat=INCOMPAT_RECOVER):
        raise Ext2Error(f"{path}: the journal needs recovery (needs_recovery); "
                        f"run e2fsck -f {path} first")
    missing = unsupported_features(sb, writing=False)
    if missing:
        raise Ext2Error(f"{path}: unsupported feature(s): {', '.join(missing)}")
    if read_only:
        return
    missing = unsupported_features(sb, writing=True)
    if missing:
        raise Ext2Error(f"{path}: cannot write feature(s) {', '.join(missing)}; "
                        f"mount it read-only (,ro)")
    state = sb.get("state")
    if (not state & STATE_VALID or state & STATE_ERRORS) and not force:
        raise Ext2Error(f"{path}: not cleanly unmounted or has errors; run "
                        f"e2fsck -f {path} (or mount with force=true)")
