"""The embedded default: what ``ninep serve`` offers with no configuration."""

from __future__ import annotations

import os

from ninep.backends.ram import RamBackend
from ninep.backends.registry import close_backends
from ninep.backends.synthetic import NullFile, SyntheticBackend, ZeroFile
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Backend
from ninep.vfs.policy import Policy, Rule

__all__ = ["DEFAULT_README", "ctl_namespace", "default_policy", "default_ram", "default_ram_limits"]

DEFAULT_README = """\
This is ninep, a 9P2000.L file server.

You are looking at its embedded default namespace: a writable RAM file
system (like tmpfs). Anything you write here lives in the server's memory
and is gone when the server stops. Like tmpfs, it holds at most half of the
host's physical memory, in as many files as half its pages (df shows both).

Mount it from Linux:
  mount -t 9p -o trans=tcp,port=5640,version=9p2000.L,msize=1048576 HOST /mnt

The aname "ctl" holds the synthetic files "null" and "zero" (as diod's ctl
export does), for diodload and benchmarks.
"""


async def ctl_namespace() -> Namespace:
    """A namespace of the synthetic files diodload expects under aname ``ctl``."""
    backend = SyntheticBackend({"null": NullFile(), "zero": ZeroFile()})
    return await Namespace.build([("/", backend, False)], name="ctl")


def default_ram_limits() -> tuple[int, int]:
    """The default RAM disk's bytes and inodes: tmpfs's own defaults (half of physical
    memory, and half as many inodes as it has pages), so no client of the default
    namespace can take the host's memory, and a host with more memory holds more."""
    pages = os.sysconf("SC_PHYS_PAGES")
    return pages * os.sysconf("SC_PAGE_SIZE") // 2, max(pages // 2, 1024)


def default_ram(size_limit: int | None = None, inode_limit: int | None = None) -> RamBackend:
    """The default namespace's RAM disk with its README; limits: default_ram_limits()."""
    size, inodes = default_ram_limits()
    ram = RamBackend(size_limit=size if size_limit is None else size_limit,
                     inode_limit=inodes if inode_limit is None else inode_limit)
    ram.add_file("README", DEFAULT_README.encode())
    return ram


async def default_policy(mounts: list[tuple[str, Backend, bool]] | None = None,
                         ram: RamBackend | None = None, groups: str = "host") -> Policy:
    """aname "ctl": the synthetic files; any other aname: ``ram`` (default_ram()) or
    the mounts given on the command line, with ``groups`` as its group model."""
    if not mounts:
        mounts = [("/", ram or default_ram(), False)]
    main = await Namespace.build(mounts, name="default")
    return Policy([
        Rule(await ctl_namespace(), frozenset({"ctl"}), name="ctl"),
        Rule(main, None, name="default", groups=groups),
    ], resources=_Backends([backend for _, backend, _ in mounts]))


class _Backends:
    """The command line's backends, closed when the server stops (an ext2 image is
    marked clean then)."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    async def close(self) -> None:
        backends, self.backends = self.backends, []
        await close_backends(reversed(backends))
