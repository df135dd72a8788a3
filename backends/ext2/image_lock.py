"""Claiming a host image for one server: the loop devices its flock cannot stop."""

from __future__ import annotations

import logging
import os

__all__ = ["Ext2Error", "check_no_loop", "loop_devices_of"]

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
