"""A request of a connection in flight: one that waits (its Task) or one a backend
answers by a callback (no Task); what a waiting request may hold."""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ninep.server.session import Reply, Session
from ninep.vfs.request import ConnectionScope
from ninep.wire import messages as m

__all__ = ["CallbackRequest", "WaitingRequest", "payload_of", "resume", "run_as_task"]


@types.coroutine
def resume(coro: Coroutine[Any, Any, Reply], first: Any) -> Generator[Any, Any, Reply]:
    """Carry on a coroutine that was started inline and has yielded ``first``."""
    yielded = first
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            continue
        try:
            yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def run_as_task(coro: Coroutine[Any, Any, Reply], first: Any, session: Session,
                   msg: m.Message | type[m.Message]) -> Reply:
    try:
        return await resume(coro, first)
    except Exception as exc:
        return session.error_reply(exc, msg)


class WaitingRequest:
    """A request that is waiting: its Task and the Tflush tags waiting on it."""

    __slots__ = ("flushes", "generation", "holds", "mtype", "scope", "started", "tag", "task")

    def __init__(self, tag: int, task: asyncio.Task[Reply], generation: int,
                 scope: ConnectionScope, holds: int, mtype: int) -> None:
        self.tag = tag
        self.mtype = mtype
        self.started = time.perf_counter()  # for the metrics' wait histogram
        self.holds = holds  # bytes of payload it may keep until its reply is written
        self.task = task
        self.flushes: list[int] = []
        self.generation = generation
        self.scope = scope

    def abandon(self) -> None:
        """Tflush, a Tversion reset or a closed connection: cancel it if it waits where
        it declared itself safe to cancel (vfs.request.cancellable), else as soon as it
        does."""
        if self.task in self.scope.cancellable:
            self.task.cancel()
        else:
            self.scope.doomed.add(self.task)


class CallbackRequest:
    """A Tgetattr a backend answers by a callback (Node.getattr_soon): no Task to
    cancel, so a Tflush drops its reply and is answered at once (flush(5): the server
    may discard a pending response), and a reply that comes later is dropped."""

    __slots__ = ("dropped", "flushes", "generation", "started", "tag")

    def __init__(self, tag: int, generation: int, dropped: Callable[[CallbackRequest], None]) -> None:
        self.tag, self.generation, self.dropped = tag, generation, dropped
        self.started = time.perf_counter()
        self.flushes: list[int] = []

    def abandon(self) -> None:
        self.dropped(self)


def payload_of(msg: m.Message | type[m.Message]) -> int:
    """The bytes a request that waits may hold: its data, or the reply it asked for."""
    if isinstance(msg, m.Twrite):
        return len(msg.data)
    if isinstance(msg, (m.Tread, m.Treaddir)):
        return msg.count
    return 0
