"""The embedded default: what ``ninep serve`` offers with no configuration."""

from __future__ import annotations

from backends.ram import RamBackend
from backends.registry import close_backends
from backends.synthetic import NullFile, SyntheticBackend, ZeroFile
from vfs.namespace import Namespace
from vfs.node import Backend
from vfs.policy import Policy, Rule

__all__ = ["DEFAULT_README", "ctl_namespace", "default_policy"]

DEFAULT_README = """\
This is ninep, a 9P2000.L file server.

You are looking at its embedded default namespace: a writable RAM file
system (like tmpfs). Anything you write here lives in the server's memory
and is gone when the server stops.

Mount it from Linux:
  mount -t 9p -o trans=tcp,port=5640,version=9p2000.L,msize=1048576 HOST /mnt

The aname "ctl" holds the synthetic files "null" and "zero" (as diod's ctl
export does), for diodload and benchmarks.
"""


async def ctl_namespace() -> Namespace:
    """A namespace of the synthetic files diodload expects under aname ``ctl``."""
    backend = SyntheticBackend({"null": NullFile(), "zero": ZeroFile()})
    return await Namespace.build([("/", backend, False)], name="ctl")


async def default_policy(mounts: list[tuple[str, Backend, bool]] | None = None) -> Policy:
    """aname "ctl": the synthetic files; any other aname: a RAM disk with a README,
    or the mounts given on the command line."""
    if not mounts:
        ram = RamBackend()
        ram.add_file("README", DEFAULT_README.encode())
        mounts = [("/", ram, False)]
    main = await Namespace.build(mounts, name="default")
    return Policy([
        Rule(await ctl_namespace(), frozenset({"ctl"}), name="ctl"),
        Rule(main, None, name="default"),
    ], resources=_Backends([backend for _, backend, _ in mounts]))


class _Backends:
    """The command line's backends, closed when the server stops (an ext2 image is
    marked clean then)."""

    def __init__(self, backends: list[Backend]) -> None:
        self.backends = backends

    async def close(self) -> None:
        backends, self.backends = self.backends, []
        await close_backends(reversed(backends))
