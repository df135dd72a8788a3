"""Who the backend call in progress serves: the attach's Cred and the backend its mount
holds, set by the namespace before it calls a backend for an operation.

A backend that can have the host enforce permissions too (passthrough running
as root: fsuid/fsgid per request, as diod and QEMU's proxy helper do) reads it;
every other backend ignores it. The backend is part of the value so that a
backend called by another one (an overlay's upper layer, copying up as the
mounter, as Linux overlayfs does) is not taken for the mount the client named.

Set (by ``serving``) only for a backend whose ``host_identity`` is true, so
that no other backend is kept alive by the value. Set, never reset: a request
that waits continues in a Task holding a copy of this context, so a reset
would not reach the context it was set in. A stale value is harmless because
the namespace sets it before every backend call that reads it; calls it does
not set it for (reads and writes of open files, listings, getattr) must not
read it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from .node import Backend, Cred

__all__ = ["CALLER", "caller", "serving"]

#: (cred, backend) of the operation in progress
CALLER: ContextVar[tuple[Cred, Any] | None] = ContextVar("ninep_caller", default=None)


def serving(cred: Cred, backend: Backend) -> None:
    """The namespace is about to call ``backend`` for ``cred``."""
    if backend.host_identity:
        current = CALLER.get()
        # set only when it changes: a fid's cred is one object for its attach's life, so
        # most calls find it set, and a set would cost more than the Context copy (every
        # ContextVar's cached value, as the transport's account, is read again after one)
        if current is None or current[0] is not cred or current[1] is not backend:
            CALLER.set((cred, backend))


def caller() -> tuple[Cred, Any] | None:
    """The (cred, backend) the namespace last set in this context."""
    return CALLER.get()
