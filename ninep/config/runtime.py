"""A Config made live: backends opened, namespaces built per attach, a Policy to serve.

Each shared mount has one instance (per expansion of its placeholders) for
every connection; connection-scoped mounts get a fresh instance per
connection, closed when it goes. A reload hands identical shared instances
over to the new policy, so a RAM disk survives a SIGHUP.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import pwd
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ninep.backends.image_sources import check_image_sources, container_index, image_path
from ninep.backends.registry import BackendConfigError, MountSpec, close_backends
from ninep.config.file import Config, NamespaceConfig, expand
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Backend, Cred
from ninep.vfs.policy import AttachRequest, ConnectionContext, Policy, Rule, normal_aname, shown
from ninep.vfs.refusals import REFUSALS
from ninep.wire.constants import NONUNAME

__all__ = ["BackendPool", "NamespacePlan", "build_policy", "placeholder_values"]

log = logging.getLogger(__name__)

MAX_EXPANSIONS = 10000  # distinct placeholder values per namespace
MAX_PRIVATE_EXPANSIONS = 256  # the same for one connection, in a namespace of private mounts
_EXPANSIONS = "placeholder expansions"
Values = tuple[tuple[str, str], ...]


def _key(namespace: str, mount: MountSpec, source: str, options: object) -> str:
    """Which shared instance a mount uses: each mount of each namespace has its own
    (two namespaces declaring a RAM disk get two disks), per expansion of its
    placeholders; a reload that keeps the mount as it was keeps the instance."""
    return json.dumps([namespace, mount.path, mount.kind, source, options, mount.read_only],
                      sort_keys=True, default=str)


def _image_key(key: str, container_key: str) -> str:
    """An image's instance is also decided by the instance of the mount holding it (a
    per-user container gives each user's image its own instance)."""
    return json.dumps([key, container_key])


Mounted = tuple[str, Backend, bool]  # a mount opened: (path, backend, read_only)


class BackendPool:
    """The shared backend instances of one policy, by (kind, source, options, ro)."""

    def __init__(self, previous: BackendPool | None = None) -> None:
        self.instances: dict[str, Backend] = {}
        # connection-scoped instances still open, oldest first: closed at the stop too,
        # since a connection's own close may still be running then (an image in a mount
        # writes back through its container, which needs the event loop to the end)
        self.per_connection: list[Backend] = []
        self._borrowed: dict[str, Backend] = {}
        self._previous = previous
        self.closed = False

    async def get(self, key: str, mount: MountSpec, source: str,
                  options: Mapping[str, object],
                  within: Sequence[tuple[str, Backend, bool]] = ()) -> Backend:
        backend = self.instances.get(key)
        if backend is not None:
            return backend
        previous = self._previous
        if previous is not None and not previous.closed and key in previous.instances:
            backend = previous.instances.pop(key)  # taken over: the old policy won't close it
            self._borrowed[key] = backend
        else:
            backend = await mount.open(source, options, within)
        self.instances[key] = backend
        return backend

    def commit(self) -> None:
        """The policy is in service: what it took over is its own now."""
        self._borrowed.clear()

    async def abort(self) -> None:
        """The policy failed to build: give back what was taken over, close the rest."""
        if self._previous is not None:
            self._previous.instances.update(self._borrowed)
        for key in self._borrowed:
            del self.instances[key]
        self._borrowed.clear()
        await self.close()

    def track(self, backend: Backend) -> Callable[[], Awaitable[None]]:
        """Note a connection-scoped ``backend``; the closer its connection calls."""
        self.per_connection.append(backend)

        async def close() -> None:
            try:
                await backend.close()
            finally:
                if backend in self.per_connection:
                    self.per_connection.remove(backend)
        return close

    async def close(self) -> None:
        self.closed = True
        await close_backends(reversed(list(self.per_connection)))
        # newest first: an image in a mount closes before the mount holding it
        instances, self.instances = list(self.instances.values()), {}
        await close_backends(reversed(instances))


def placeholder_values(names: frozenset[str], request: AttachRequest, cred: Cred) -> Values:
    """The values of the placeholders a namespace uses; EACCES when one could escape
    its directory (a '/', '..', NUL) or is unknown."""
    out = []
    for name in sorted(names):
        if name == "uid":
            value = str(cred.uid)
        elif name == "gid":
            value = str(cred.gid)
        elif name == "aname":
            value = normal_aname(request.aname)
        else:
            value = request.uname or _user_name(request.n_uname)
        if not value or value in (".", "..") or "/" in value or "\0" in value:
            REFUSALS.warning(log, request.peer, "attach refused for %s: {%s} would be %s",
                             request, name, shown(value))
            raise OSError(errno.EACCES, f"{{{name}}} may not be {value!r}")
        out.append((name, value))
    return tuple(out)


def _user_name(uid: int) -> str:
    if uid == NONUNAME:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return ""


class NamespacePlan:
    """One configured namespace: builds (and caches) the Namespace of an attach."""

    def __init__(self, config: NamespaceConfig, pool: BackendPool) -> None:
        self.name = config.name
        self.config = config
        self.pool = pool
        check_image_sources(config.mounts)  # "@" sources: order, cycles, scope
        self.names = frozenset().union(*(m.placeholders for m in config.mounts))
        self.private = any(m.scope == "connection" for m in config.mounts)
        self._shared: dict[Values, asyncio.Future[Namespace]] = {}
        self._expansions = 0
        # what a reload compares (vfs.policy.Policy.review): the same name is the same
        # namespace; a mount path gone or made read-only narrows attaches made before
        self.identity = config.name
        self.mount_grants = {mount.path: mount.read_only for mount in config.mounts}

    async def prepare(self) -> None:
        """Open what can be opened now, so a bad mount stops the server before it listens.
        Connection-scoped mounts are opened once as a probe and closed again."""
        if self.names:
            # built per attach: open now what has no placeholder (kinds and sources of
            # the rest were checked while parsing)
            alone: dict[str, tuple[Mounted, str]] = {}
            for mount in self.config.mounts:
                if not mount.placeholders:
                    await self._open_alone(mount, alone)
            return
        if not self.private:
            await self.namespace_for_values((), ConnectionContext())
            return
        probe = ConnectionContext()
        try:
            await self.namespace_for_values((), probe)
        finally:
            await probe.close()

    async def _open_alone(self, mount: MountSpec, alone: dict[str, tuple[Mounted, str]]) -> None:
        """Open ``mount`` now if it has no placeholder; ``alone``: the shared mounts
        opened so far, by path (an image in one of them is opened now too)."""
        source = str(expand(mount.source, {}))  # "{{" is a literal brace
        options = expand(dict(mount.options), {})
        assert isinstance(options, dict)
        within: list[Mounted] = []
        key = _key(self.name, mount, source, options)
        path = image_path(source)
        if path is not None:
            j = container_index(path, self.config.mounts)
            found = None if j is None else alone.get(self.config.mounts[j].path)
            if found is None:
                return  # its mount is opened per attach: so is the image, then
            within, key = [found[0]], _image_key(key, found[1])
        if mount.scope == "shared":
            backend = await self.pool.get(key, mount, source, options, within)
            alone[mount.path] = ((mount.path, backend, mount.read_only), key)
            return
        backend = await mount.open(source, options, within)
        await backend.close()

    async def namespace_for(self, request: AttachRequest, cred: Cred,
                            context: ConnectionContext) -> Namespace:
        values = placeholder_values(self.names, request, cred) if self.names else ()
        try:
            return await self.namespace_for_values(values, context)
        except BackendConfigError as exc:
            REFUSALS.warning(log, request.peer, "attach refused for %s: %s", request, exc)
            raise OSError(errno.EACCES, str(exc)) from None

    async def namespace_for_values(self, values: Values, context: ConnectionContext) -> Namespace:
        cache: dict[Any, asyncio.Future[Namespace]] = (
            context.items if self.private else self._shared)  # type: ignore[assignment]
        key: object = (id(self), values) if self.private else values
        future = cache.get(key)
        if future is None:
            self._count_expansion(values, context)
            future = asyncio.ensure_future(self._build(dict(values), context))
            cache[key] = future
        try:
            return await asyncio.shield(future)
        except BaseException:
            if cache.get(key) is future and future.done():
                del cache[key]  # a failed build is retried by the next attach
            raise

    def _count_expansion(self, values: Values, context: ConnectionContext) -> None:
        """Each distinct set of placeholder values costs backend instances: a client
        inventing unames must not grow the server without bound."""
        if not values:
            return
        counter = (_EXPANSIONS, id(self))
        count = self._expansions if not self.private else context.items.get(counter, 0)
        assert isinstance(count, int)
        if count >= (MAX_PRIVATE_EXPANSIONS if self.private else MAX_EXPANSIONS):
            log.warning("namespace %r: %d distinct placeholder values already; refusing more",
                        self.name, count)
            raise OSError(errno.EACCES, "too many distinct placeholder values")
        if self.private:
            context.items[counter] = count + 1
        else:
            self._expansions += 1

    async def _build(self, values: Mapping[str, str], context: ConnectionContext) -> Namespace:
        mounts: list[Mounted] = []  # in order: an "@" source is a file of those before it
        keys: list[str] = []  # which instance each is (an image's names its container's)
        for mount in self.config.mounts:
            source = str(expand(mount.source, values))
            options = expand(dict(mount.options), values)
            assert isinstance(options, dict)
            key = _key(self.name, mount, source, options)
            path = image_path(source)
            if path is not None:
                j = container_index(path, self.config.mounts)
                assert j is not None  # check_image_sources
                key = _image_key(key, keys[j])
            if mount.scope == "connection":
                backend = await mount.open(source, options, mounts)
                context.on_close(self.pool.track(backend))  # newest first: before its container
                key = f"connection {id(backend)}"
            else:
                backend = await self.pool.get(key, mount, source, options, mounts)
            mounts.append((mount.path, backend, mount.read_only))
            keys.append(key)
        try:
            return await Namespace.build(mounts, name=self.name)
        except ValueError as exc:
            raise BackendConfigError(f"{self.config.where}: mounts: {exc}") from None


async def build_policy(config: Config, previous: Policy | None = None) -> Policy:
    """Open the config's shared backends and return its Policy; BackendConfigError
    (naming the file, the table and the key) if any mount cannot be opened."""
    old_pool = previous.resources if previous is not None else None
    pool = BackendPool(old_pool if isinstance(old_pool, BackendPool) else None)
    try:
        plans = {name: NamespacePlan(ns, pool) for name, ns in config.namespaces.items()}
        for plan in plans.values():
            await plan.prepare()
    except BaseException:
        await pool.abort()
        raise
    rules = [Rule(plans[p.namespace], name=p.name, match=p.match, read_only=p.read_only,
                  idmap=p.idmap, limits=p.limits, groups=p.groups) for p in config.policies]
    return Policy(rules, authorized_keys=config.authorized_keys, resources=pool,
                  source=str(config.path))
