"""The request being served, as backends see it: the connection's account that pays for
what it holds, and whether its current wait may be cancelled by Tflush or a closed
connection."""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar, Token
from typing import TypeVar

from .budget import ConnectionAccount

__all__ = ["RequestScope", "cancellable", "current_account", "enter", "leave"]

T = TypeVar("T")


class RequestScope:
    """Set by the transport around each request (and inherited by its Task)."""

    __slots__ = ("account", "waits")

    def __init__(self, account: ConnectionAccount | None) -> None:
        self.account = account
        self.waits = 0  # cancellable waits in progress

    @property
    def cancellable(self) -> bool:
        return self.waits > 0


_current: ContextVar[RequestScope | None] = ContextVar("ninep_request", default=None)


def enter(scope: RequestScope) -> Token[RequestScope | None]:
    return _current.set(scope)


def leave(token: Token[RequestScope | None]) -> None:
    _current.reset(token)


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
    scope.waits += 1
    try:
        return await awaitable
    finally:
        scope.waits -= 1
