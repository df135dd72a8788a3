"""The descriptor budget: O_PATH descriptors of nodes, closed least recently used first."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ninep.vfs.budget import BUDGET, ConnectionAccount

__all__ = ["FdBox", "FdTable", "Reopenable"]

log = logging.getLogger(__name__)

#: descriptors one operation may open before the next trim (a create opens two)
HEADROOM = 4


class FdBox:
    """A node's descriptor, shared with its finalizer; -1 while closed by the budget.
    ``payer``: the connection charged for it while open (vfs.budget)."""

    __slots__ = ("fd", "payer")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.payer: ConnectionAccount | None = None


class Reopenable(Protocol):
    def can_close(self) -> bool:
        """True when the descriptor may be closed now and reopened by name later."""
        ...


#: a weak reference to the node owning a descriptor
OwnerRef = Callable[[], Reopenable | None]


class FdTable:
    """Counts the descriptors the backend holds and keeps them under ``limit``.

    Only node (O_PATH) descriptors are closed to make room, and only when their
    node says it can reopen them: not the root, not pinned by an operation in a
    thread, not unlinked, and still found under its recorded name. Open files
    (handles) are never closed behind a client's back. Trimming happens at the
    start of an operation, never inside one, so a descriptor fetched during an
    operation stays valid until it ends.

    Each node descriptor is charged to the connection whose request opened it
    (vfs.budget); a connection near its share gets its own reopenable ones
    closed first, at the start of its next operation.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lru: OrderedDict[FdBox, OwnerRef] = OrderedDict()
        self._warned = False
        self._floor = 0  # no trimming until this many are open (after a fruitless pass)
        self._trim_above = limit - HEADROOM  # max(limit - HEADROOM, _floor): trim's test

    def add_node_fd(self, owner: OwnerRef, box: FdBox,
                    account: ConnectionAccount | None) -> None:
        """Track ``box`` (just opened) for the node ``owner`` refers to, charged to
        ``account`` (the request's: ``current_account()``, read once by the caller)."""
        self.count += 1
        BUDGET.opened(account)
        self._lru[box] = owner
        box.payer = account

    def touch(self, box: FdBox) -> None:
        self._lru.move_to_end(box)

    def release(self, box: FdBox) -> None:
        """The owner is gone (or the backend closes): close its descriptor."""
        self._lru.pop(box, None)
        if box.fd >= 0:
            self._close(box)
            if self._floor:
                self._set_floor(self._floor - 1)

    def _close(self, box: FdBox) -> None:
        os.close(box.fd)
        box.fd = -1
        self.count -= 1
        BUDGET.closed(box.payer)
        box.payer = None

    def _set_floor(self, floor: int) -> None:
        self._floor = floor
        self._trim_above = max(self.limit - HEADROOM, floor)

    def trim(self, account: ConnectionAccount | None) -> None:
        """Close reopenable descriptors, oldest use first, until there is headroom:
        for ``account``, the connection of the request starting (near its share), then
        for the table (near ``limit``). Called before an operation opens descriptors
        (one that only uses its node's open descriptor needs none).

        Descriptors that cannot be closed now go to the young end (a second
        chance), and after a pass that freed too little, trimming waits until
        HEADROOM more are open, so a full budget never costs a scan per call.
        """
        if account is not None and account.held > account.reclaim_floor:
            target = BUDGET.per_connection - HEADROOM
            if account.held > target:
                self._evict(account.held - target, account)
                account.reclaim_floor = account.held + HEADROOM if account.held > target else 0
        if self.count <= self._trim_above:
            return
        target = self.limit - HEADROOM
        self._evict(self.count - target, None)
        self._set_floor(self.count + HEADROOM if self.count > target else 0)
        if self._floor and not self._warned:
            self._warned = True
            log.warning("export's descriptor table (max_fds %d) is full: %d open, none "
                        "reopenable", self.limit, self.count)

    def _evict(self, wanted: int, payer: ConnectionAccount | None) -> None:
        """Close up to ``wanted`` reopenable descriptors (``payer``'s only, if given)."""
        evict: list[FdBox] = []
        keep: list[FdBox] = []
        for box, ref in self._lru.items():
            if len(evict) >= wanted:
                break
            if payer is not None and box.payer is not payer:
                continue
            owner = ref()
            if owner is not None and box.fd >= 0:
                (evict if owner.can_close() else keep).append(box)
        for box in keep:
            self._lru.move_to_end(box)
        for box in evict:
            del self._lru[box]
            self._close(box)

    def opened_other(self) -> None:
        """A handle's descriptor was opened (counted, never closed by the budget; the
        process-wide vfs.budget counts it for its connection)."""
        self.count += 1

    def closed_other(self) -> None:
        self.count -= 1
        if self._floor:
            self._set_floor(self._floor - 1)

    def close_all(self) -> None:
        for box in list(self._lru):
            self.release(box)
