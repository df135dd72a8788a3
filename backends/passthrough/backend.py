"""The passthrough backend: a host directory served as is, with nothing above it reachable."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import stat
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ninep.vfs.budget import BUDGET, ConnectionAccount
from ninep.vfs.node import Backend, Node

from ..registry import BackendConfigError, Options, option_int, option_str
from .fdtable import FdBox, FdTable
from .fsident import carry, switching
from .handle import FifoOpens
from .inodes import InodeMap
from .node import PassthroughNode
from .ownership import MODELS, Ownership

__all__ = ["PassthroughBackend", "UnownedPassthroughBackend", "open_backend"]

T = TypeVar("T")
DEFAULT_THREADS = 4


class PassthroughBackend(Backend):
    """A host directory. vfs/ checks permissions against the attributes this backend
    reports (the host's under ``passthrough``, the stored ones under ``mapped-xattr``).

    Confinement: every name is resolved by one ``openat``/``*at`` call relative to
    a directory descriptor, never following a symlink, and a name holding '/' or
    being '.'/'..' is refused here too. '..' is the parent recorded at walk time,
    never the host's. Objects are reopened through /proc/self/fd only for
    non-symlinks, so the magic link lands on the very inode walked to (even
    moved or unlinked) and never follows further. Hard links are made by name,
    without following. Device nodes are served but never opened on the host.

    What this means for host-side changes: a fid keeps the object it walked to,
    as an open descriptor on a local disk does, but a directory moved out of the
    export by someone on the host lends no names outside it: operations through
    it answer ENOENT, as a path-based server would (containment.py). A node
    whose descriptor the budget closed is reopened by its recorded name; if the
    host renamed it meanwhile, that fid gets ESTALE.
    """

    kind = "passthrough"
    keeps_ownership = True

    def __init__(self, path: str, root_fd: int, model: Ownership, read_only: bool,
                 max_fds: int, threads: int = DEFAULT_THREADS) -> None:
        self.path = path
        self.model = model
        self.mapped = model.specials_as_files  # attributes come from user.virtfs.* xattrs
        self.read_only = read_only
        self.closed = False
        self.nowait_reads = True  # cleared if the host filesystem refuses RWF_NOWAIT
        self.host_identity = switching(model, root_fd)  # callers' fsuid on host calls (fsident)
        self.fds = FdTable(max_fds)
        st = os.fstat(root_fd)
        self.inodes = InodeMap(st.st_dev)
        # the live node of each host file, so every fid on it shares one descriptor
        self.nodes: dict[tuple[int, int], weakref.ReferenceType[PassthroughNode]] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="passthrough")
        # a FIFO's open may wait for ever for the other end: bounded, cancellable
        self.fifo_opens = FifoOpens()
        self.root = self._node(root_fd, st, None, "")

    def _node(self, fd: int, st: os.stat_result, parent: PassthroughNode | None,
              name: str, account: ConnectionAccount | None = None) -> PassthroughNode:
        node = PassthroughNode(self, FdBox(fd), st, parent, name)
        self.fds.add_node_fd(node.ref, node.box, account)
        self.nodes[node.key] = node.ref
        return node

    def live(self, key: tuple[int, int]) -> PassthroughNode | None:
        """The node of host file ``key`` if some fid still holds one."""
        ref = self.nodes.get(key)
        return None if ref is None else ref()

    def adopt(self, fd: int, parent: PassthroughNode, name: str,
              account: ConnectionAccount | None) -> PassthroughNode:
        """The node for the O_PATH descriptor ``fd`` just opened as ``name`` in ``parent``
        by a request of ``account`` (``current_account()``): the live node of that file if
        there is one (``fd`` is then closed)."""
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        node = self.live((st.st_dev, st.st_ino))
        if node is not None:
            os.close(fd)
            node.parent, node.name = parent, name
            return node
        try:  # a new descriptor for this connection (trimmed at the walk's start)
            BUDGET.check_open(account)
        except OSError:
            os.close(fd)
            raise
        return self._node(fd, st, parent, name, account)

    def own_node(self, node: Node) -> PassthroughNode:
        if not isinstance(node, PassthroughNode) or node.fs is not self:
            raise OSError(errno.EXDEV, "not in the same passthrough export")
        return node

    def writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "read-only file system")

    async def in_thread(self, func: Callable[..., T], *args: object) -> T:
        """Run a call that may block in the backend's thread pool."""
        if self.host_identity:
            func = carry(func)  # the pool thread takes the identity of the step sending it
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self.fifo_opens.close()  # while the nodes' descriptors still name the FIFOs
        self.fds.close_all()


class UnownedPassthroughBackend(PassthroughBackend):
    """Security model ``none``: the host checks permissions for the server's identity."""

    keeps_ownership = False


def default_max_fds() -> int:
    """Descriptors an export keeps before closing the least recently used nodes': half
    of what backends may hold in all (vfs.budget), twice one connection's share."""
    return max(16, min(BUDGET.total // 2, 4096))


def open_root(source: str, read_only: bool) -> int:
    """An O_PATH descriptor of the export; BackendConfigError names a bad source."""
    if not os.path.isabs(source):
        raise BackendConfigError(f"passthrough source {source!r} must be an absolute path")
    try:
        fd = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BackendConfigError(f"passthrough source {source}: no such directory") from None
    except NotADirectoryError:
        raise BackendConfigError(f"passthrough source {source}: not a directory") from None
    except OSError as exc:
        raise BackendConfigError(f"passthrough source {source}: {exc.strerror}") from None
    try:  # readable and searchable by the server, and /proc there to reopen descriptors
        os.close(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd))
        os.stat(f"/proc/self/fd/{fd}")
    except OSError as exc:
        os.close(fd)
        what = "cannot read it" if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror
        if exc.filename and str(exc.filename).startswith("/proc"):
            what = "/proc is not mounted (needed to reopen descriptors)"
        raise BackendConfigError(f"passthrough source {source}: {what}") from None
    return fd


async def open_backend(source: str, options: Options, read_only: bool) -> PassthroughBackend:
    """The registry's factory. Options: ``security_model`` (passthrough, mapped-xattr,
    none; passthrough when the server is root, else mapped-xattr), ``max_fds``
    (the descriptor budget) and ``threads`` (the pool for calls that may block)."""
    is_root = os.geteuid() == 0
    name = option_str(options, "security_model", "passthrough" if is_root else "mapped-xattr",
                      tuple(MODELS))
    max_fds = option_int(options, "max_fds", default_max_fds(), minimum=8)
    threads = option_int(options, "threads", DEFAULT_THREADS, minimum=1)
    assert max_fds is not None and threads is not None
    if name == "passthrough" and not is_root:
        raise BackendConfigError("option security_model=passthrough needs the server to run "
                                 "as root (use mapped-xattr or none)")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and max_fds > soft - 32:
        raise BackendConfigError(f"option max_fds={max_fds}: must stay well below the "
                                 f"descriptor limit ({soft})")
    fd = open_root(os.path.normpath(source), read_only)
    model = MODELS[name]()
    cls = PassthroughBackend if model.keeps_ownership else UnownedPassthroughBackend
    if not stat.S_ISDIR(os.fstat(fd).st_mode):  # pragma: no cover - O_DIRECTORY made sure
        os.close(fd)
        raise BackendConfigError(f"passthrough source {source}: not a directory")
    return cls(os.path.normpath(source), fd, model, read_only, max_fds, threads)
