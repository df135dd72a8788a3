"""Mounts whose tree lives in one process, shared by every worker: worker 0 owns them
and serves each on a private UNIX socket; the others mount them with the 9p backend.

Worker 0 opens such a mount (a RAM disk, a read-write ext2 image: placement.py)
as a single server would, serves it to its own clients directly, and exports it
alone, at the root of a namespace of its own (aname ``owned:N``), on a socket in
a directory only the server's user may enter. Every other worker mounts that
export in its place, as uid 0, so that the owner's permission checks pass and
this worker's own checks (vfs/namespace.py, with the client's identity) decide,
and files are created for the client's uid (backends/remote gives them their
owner). The owner's qid paths are its inode numbers (the export is its only
mount), and the 9p backend keeps a back server's qid paths as its inode numbers,
so the same file has the same qid.path in every worker. Byte-range locks taken through the export are
held in worker 0's lock table, beside those of its own clients.

If worker 0 dies, what the mounts held is gone, as when a single server dies;
the other workers' mounts answer EIO until they reconnect to its successor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from ninep.backends.registry import MountSpec
from ninep.server.listeners import ListenAddress, Server
from ninep.server.session import ServerLimits
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Backend
from ninep.vfs.policy import Policy, Rule
from ninep.workers.placement import keeps_state_in_process

if TYPE_CHECKING:
    from ninep.config.file import Config

__all__ = ["OWNER", "Owned", "owned_mounts"]

OWNER = 0  # the worker that owns the mounts living in one process
_ANAME = "owned:{}"


@dataclass
class Owned:
    """One worker's side of the owned mounts: ``index`` is the worker's, ``socket`` the
    private socket's path."""

    index: int
    socket: str
    # what the owner exports: (aname, what it is for the log, backend, read-only)
    _exports: list[tuple[str, str, Backend, bool]] = field(default_factory=list)
    _server: Server | None = None

    async def open_mounts(self, specs: Sequence[MountSpec],
                          default: Backend | None = None) -> list[tuple[str, Backend, bool]]:
        """The command line's mounts, opened where they live; no specs: ``default`` (the
        embedded RAM disk) in the owner, its export in the others."""
        if not specs:
            if self.index == OWNER:
                assert default is not None
                self._exports.append((_ANAME.format(0), "/", default, False))
                return [("/", default, False)]
            return [("/", await self._remote(0, False), False)]
        from ninep.backends.image_sources import check_image_sources
        from ninep.backends.registry import close_backends
        check_image_sources(specs)
        mounts: list[tuple[str, Backend, bool]] = []
        owned = 0
        try:
            for spec in specs:  # in order: "@" sources name files of earlier mounts
                if not keeps_state_in_process(spec.kind, spec.options, spec.read_only):
                    backend = await spec.open(within=mounts)
                elif self.index == OWNER:
                    backend = await spec.open(within=mounts)
                    self._exports.append((_ANAME.format(owned), spec.path, backend,
                                          spec.read_only))
                    owned += 1
                else:
                    backend = await self._remote(owned, spec.read_only)
                    owned += 1
                mounts.append((spec.path, backend, spec.read_only))
        except BaseException:
            await close_backends(backend for _, backend, _ in reversed(mounts))
            raise
        return mounts

    def route(self, config: Config) -> Config:
        """A config file as this worker serves it: in the others than the owner, each
        owned mount (owned_mounts) becomes a 9p mount of the owner's export. Applied
        again to the file a reload reads (Server.config_filter)."""
        if self.index == OWNER:
            return config
        namespaces = {}
        for name, namespace in config.namespaces.items():
            mounts = tuple(
                replace(m, kind="9p", source=f"unix://{self.socket}", options=MappingProxyType({
                    "aname": _ANAME.format(f"{name}:{m.path}"), "uname": "root", "uid": 0}))
                if _owned(m) else m for m in namespace.mounts)
            namespaces[name] = replace(namespace, mounts=mounts)
        return replace(config, namespaces=MappingProxyType(namespaces))

    async def export_config_mounts(self, policy: Policy) -> None:
        """In the owner: the owned mounts of a config file's policy, found in the
        namespaces it built (a reload that kept a mount kept its instance)."""
        from ninep.config.runtime import NamespacePlan
        from ninep.vfs.policy import ConnectionContext
        if self.index != OWNER:
            return
        self._exports = []
        plans = {rule.namespace.name: rule.namespace for rule in policy.rules
                 if isinstance(rule.namespace, NamespacePlan)}
        for name, plan in sorted(plans.items()):
            paths = [m.path for m in plan.config.mounts if _owned(m)]
            if not paths:
                continue
            namespace = await plan.namespace_for_values((), ConnectionContext())
            for mount in namespace.mounts:
                if mount.path in paths:
                    self._exports.append((_ANAME.format(f"{name}:{mount.path}"),
                                          f"{name}:{mount.path}", mount.backend,
                                          mount.read_only))

    async def _remote(self, number: int, read_only: bool) -> Backend:
        from ninep.backends.remote import open_remote
        from ninep.backends.remote.link import RemoteSpec
        spec = RemoteSpec(url=f"unix://{self.socket}", aname=_ANAME.format(number),
                          uname="root", n_uname=0)
        return await open_remote(spec, read_only)

    async def start(self, public: Server) -> None:
        """In the owner: serve each owned mount on the private socket, its locks in
        the public server's table (one table for every client of the file)."""
        if self.index != OWNER or not self._exports:
            return
        server = Server(await self._private_policy(), ServerLimits())
        server.locks = public.locks
        address = ListenAddress("unix", path=self.socket, mode=0o600)
        await server.listen(address)
        self._server = server

    async def reloaded(self, policy: Policy) -> None:
        """In the owner, after a reload of a config file: export what the new policy
        holds (the same instances where the mounts stayed as they were)."""
        if self.index != OWNER or self._server is None:
            return
        await self.export_config_mounts(policy)
        self._server.policy = await self._private_policy()

    async def _private_policy(self) -> Policy:
        rules = []
        for aname, what, backend, read_only in self._exports:
            namespace = await Namespace.build([("/", backend, read_only)], name=aname)
            rules.append(Rule(namespace, frozenset({aname}), name=f"worker {OWNER}'s {what}"))
        return Policy(rules)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()  # which removes the socket file
            self._server = None


def _owned(mount: MountSpec) -> bool:
    return mount.scope == "shared" and not mount.placeholders and keeps_state_in_process(
        mount.kind, mount.options, mount.read_only)


def owned_mounts(config: Config) -> list[str]:
    """The config file's mounts worker 0 owns and shares: "NAMESPACE: PATH (KIND)"."""
    return [f"{name}: {m.path} ({m.kind})" for name, ns in config.namespaces.items()
            for m in ns.mounts if _owned(m)]
