"""The connection a request came from, as backends see it: the account that pays for what
its requests hold, and which of its requests wait where Tflush or a closed connection
may cancel them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from contextvars import ContextVar
from typing import TypeVar

from .budget import ConnectionAccount

__all__ = ["ConnectionScope", "cancellable", "current_account", "enter", "leave"]

T = TypeVar("T")


class ConnectionScope:
    """One per connection, set by the transport around each request (and inherited by
    its Task): one object for all requests, so that a request costs no allocation."""

    __slots__ = ("account", "cancellable", "doomed", "inline")

    def __init__(self, account: ConnectionAccount | None) -> None:
        self.account = account
        self.inline = False  # the transport is running a request's first step itself
        self.cancellable: set[asyncio.Task[object]] = set()  # requests' Tasks, safe to cancel
        # flushed (or their connection gone) before they waited where they may be
        # cancelled: cancelled as soon as they get there
        self.doomed: set[asyncio.Task[object]] = set()


_current: ContextVar[ConnectionScope | None] = ContextVar("ninep_connection", default=None)


#: the transport around each request: ``token = enter(scope)`` ... ``leave(token)``
#: (the ContextVar's own methods: no Python frame on every request)
enter = _current.set
leave = _current.reset


def current_account() -> ConnectionAccount | None:
    """The connection the running request came from; None outside a server."""
    scope = _current.get()
    return None if scope is None else scope.account


async def cancellable(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` with the request marked safe to cancel: a Tflush (or the
    connection closing) cancels it at once and CancelledError is raised here, for the
    caller to undo what the wait began. Only for waits that change nothing until they
    end, as a blocked Tlock (whose cancelling Linux expects: it flushes a lock wait
    when the process is interrupted)."""
    scope = _current.get()
    if scope is None:
        return await awaitable
    if scope.inline:  # not yet in the request's Task: yield once, the transport makes it
        await asyncio.sleep(0)
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - a request always has its Task by now
        return await awaitable
    if task in scope.doomed:  # a Tflush came first: give up before waiting
        if isinstance(awaitable, Coroutine):
            awaitable.close()
        elif isinstance(awaitable, asyncio.Future):
            awaitable.cancel()
        raise asyncio.CancelledError
    scope.cancellable.add(task)
    try:
        return await awaitable
    finally:
        scope.cancellable.discard(task)
