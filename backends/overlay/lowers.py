"""Lower layers shared by every overlay that names the same one, opened once, closed by the last.

One overlay per connection over one image (``scope = "connection"``) then
parses the image once, not once per client. Sharing is safe because an
overlay never writes to its lower layer nor keeps state in its objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ninep.vfs.node import Backend

from ..registry import open_backend

__all__ = ["Release", "acquire_lower", "shared_lower_count"]

Release = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class _Entry:
    opened: asyncio.Future[Backend | None]  # None: the opening failed, try again
    users: int = 0


# Keyed by event loop too: a backend's futures and pools belong to the loop that opened it.
_POOL: dict[tuple[int, str, str, str], _Entry] = {}


def _frozen(value: object) -> object:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


async def acquire_lower(kind: str, source: str,
                        options: Mapping[str, object]) -> tuple[Backend, Release]:
    """The read-only ``kind:source`` backend with ``options``, opened by the first caller;
    call the returned release once when done with it."""
    key = (id(asyncio.get_running_loop()), kind, source, repr(_frozen(options)))
    while True:
        entry = _POOL.get(key)
        if entry is None:
            entry = _POOL[key] = _Entry(asyncio.get_running_loop().create_future())
            try:
                backend: Backend | None = await open_backend(
                    kind, source, dict(options), read_only=True, where="overlay lower")
            except BaseException:
                del _POOL[key]
                entry.opened.set_result(None)
                raise
            entry.opened.set_result(backend)
        else:
            backend = await asyncio.shield(entry.opened)
        if backend is not None:
            break
    entry.users += 1
    return backend, _releaser(key, entry, backend)


def _releaser(key: tuple[int, str, str, str], entry: _Entry, backend: Backend) -> Release:
    released = False

    async def release() -> None:
        nonlocal released
        if released:
            return
        released = True
        entry.users -= 1
        if entry.users == 0:
            if _POOL.get(key) is entry:
                del _POOL[key]
            await backend.close()

    return release


def shared_lower_count() -> int:
    """How many lower layers are open for sharing (for tests and diagnostics)."""
    return len(_POOL)
