"""Image sources in the namespace (``@/path``): the rules a list of mounts must keep.

A tar or ext2 mount whose source starts with ``@`` serves a file of another
mount of the same namespace (backends/image_file.py opens it). Mounts open in
the order they are declared, so the mount holding the file (the deepest one
whose path contains it) must be declared before the image: a mount naming a
file inside itself, a later mount, or a cycle of mounts is refused at load,
naming the mounts. A shared image cannot live in a per-connection mount
(``scope = "connection"``): each connection has its own instance of that
mount, so there would be no one file to serve. A read-write ext2 image needs a
mount that is not read-only.
"""

from __future__ import annotations

from collections.abc import Sequence

from ninep.vfs.node import Backend

from .registry import BackendConfigError, MountSpec, option_bool

__all__ = ["check_image_sources", "container_index", "image_path", "open_in_order"]

IMAGE_PREFIX = "@"


def image_path(source: str) -> str | None:
    """The namespace path a source names ("@/srv/x.img" -> "/srv/x.img"), or None."""
    return source[1:] if source.startswith(IMAGE_PREFIX) else None


def container_index(path: str, mounts: Sequence[MountSpec]) -> int | None:
    """The index of the deepest of ``mounts`` whose path holds ``path``, or None."""
    best: int | None = None
    for i, mount in enumerate(mounts):
        inside = path == mount.path or path.startswith(mount.path.rstrip("/") + "/")
        if inside and (best is None or len(mount.path) > len(mounts[best].path)):
            best = i
    return best


def _fail(mount: MountSpec, what: str) -> BackendConfigError:
    return BackendConfigError(f"{mount.where}: source {mount.source!r}: {what}", "source")


def check_image_sources(mounts: Sequence[MountSpec]) -> None:
    """BackendConfigError (key "source") for the first ``@`` source that breaks a rule."""
    for i, mount in enumerate(mounts):
        path = image_path(mount.source)
        if path is None:
            continue
        j = container_index(path, mounts)
        if j is None:
            raise _fail(mount, "no mount of this namespace holds it")
        if j == i:
            raise _fail(mount, f"names a file inside this mount ({mount.path}) itself")
        container = mounts[j]
        if j > i:
            cycle = _cycle(mounts, i, j)
            if cycle:
                raise _fail(mount, "a cycle of images: " + " -> ".join(cycle))
            raise _fail(mount, f"it is in {container.path}, declared after this mount; "
                               f"mounts open in order, so declare {container.path} first")
        if mount.scope == "shared" and container.scope == "connection":
            raise _fail(mount, f"{container.path} is per connection (scope = \"connection\"), "
                               "so a shared image has no one file to serve: make this mount "
                               "per connection too")
        if mount.kind == "ext2" and container.read_only and not _read_only(mount):
            raise _fail(mount, f"{container.path} is read-only, and a read-write ext2 image "
                               "needs a writable container: serve it read-only (ro)")


def _read_only(mount: MountSpec) -> bool:
    try:
        return mount.read_only or option_bool(dict(mount.options), "ro", False)
    except BackendConfigError:
        return mount.read_only  # a placeholder: known per attach


def _cycle(mounts: Sequence[MountSpec], start: int, first: int) -> list[str]:
    """The mount paths of a cycle from ``start`` through ``first`` back to it, or []."""
    chain, k = [start, first], first
    while (path := image_path(mounts[k].source)) is not None:
        k_next = container_index(path, mounts)
        if k_next is None or k_next in chain[1:]:
            return []
        if k_next == start:
            return [mounts[n].path for n in [*chain, start]]
        chain.append(k_next)
        k = k_next
    return []


async def open_in_order(specs: Sequence[MountSpec]) -> list[tuple[str, Backend, bool]]:
    """Open the command line's mounts in order, each ``@`` source in those before it;
    on a failure, close what was opened (newest first) and raise."""
    check_image_sources(specs)
    opened: list[tuple[str, Backend, bool]] = []
    try:
        for spec in specs:
            opened.append((spec.path, await spec.open(within=opened), spec.read_only))
    except BaseException:
        from .registry import close_backends
        await close_backends(backend for _, backend, _ in reversed(opened))
        raise
    return opened
