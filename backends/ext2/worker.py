"""Where an image's operations run: one at a time, in the image's thread or inline.

Invariant 6 (docs/architecture.md): nothing that may wait for a disk runs on the
event loop. Write-back, fsync, file data and every operation on an image that
lives in another mount (whose reads wait for the event loop itself) run in the
image's one thread, in the order they were asked for. On a host image, an
operation that needs no more than cached metadata blocks runs inline when
nothing is queued for the thread, which is most of the time: a thread hop would
cost more than the operation. Either way operations never interleave, so a
checkpoint only ever sees whole ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["Worker"]

T = TypeVar("T")


class Worker:
    """The image's thread and the count of operations queued for it."""

    def __init__(self, name: str, inline: bool) -> None:
        self.name = name
        self.inline = inline  # a host image: metadata operations may run on the loop
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._queued = 0
        self._thread_ids: set[int] = set()

    @property
    def idle(self) -> bool:
        """Nothing queued or running in the thread: an inline operation cannot overlap."""
        return self._queued == 0

    def in_thread(self) -> bool:
        return threading.get_ident() in self._thread_ids

    async def call(self, func: Callable[..., T], *args: object) -> T:
        """An operation that touches the image only for metadata: inline when it may be."""
        if self.inline and self._queued == 0:
            return func(*args)
        return await self.offload(func, *args)

    async def offload(self, func: Callable[..., T], *args: object) -> T:
        """An operation that may wait: in the image's thread, after those queued before.

        A cancelled caller (Tflush) does not cancel it: it completes, as a request
        the server already began, and its result is dropped.
        """
        if self._pool is None:
            self.loop = asyncio.get_running_loop()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"ext2 {self.name}")
        with self._lock:
            self._queued += 1
        try:
            future = self._pool.submit(self._run, func, args)
        except BaseException:
            with self._lock:
                self._queued -= 1
            raise
        return await asyncio.shield(asyncio.wrap_future(future))

    def _run(self, func: Callable[..., T], args: tuple[object, ...]) -> T:
        self._thread_ids.add(threading.get_ident())
        try:
            return func(*args)
        finally:
            with self._lock:
                self._queued -= 1

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
