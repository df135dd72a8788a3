"""What the process's host descriptors allow: a total for all backends and a share per
connection, so that one greedy client gets EMFILE and the others, and accept(2), go on."""

from __future__ import annotations

import errno
import logging
import resource

__all__ = ["BUDGET", "SERVER_DESCRIPTORS", "ConnectionAccount", "DescriptorBudget",
           "raise_descriptor_limit"]

log = logging.getLogger(__name__)

#: what a process with no limit (RLIM_INFINITY) is budgeted as
UNLIMITED = 1 << 20
#: what the server holds beside its connections' sockets: listeners, logs, images,
#: pipes, the event loop's own, a worker's private socket
SERVER_DESCRIPTORS = 64


class ConnectionAccount:
    """What one connection holds: the descriptors its requests opened and that are
    still open, FIFO opens it has waiting, and whether its refusals were logged (once
    per connection, not per request)."""

    __slots__ = ("fifo_waits", "held", "logged", "peer", "reclaim_floor")

    def __init__(self, peer: object) -> None:
        self.peer = peer
        self.held = 0
        self.fifo_waits = 0
        self.logged: set[str] = set()
        # after a pass that found none of its descriptors closable: no new pass until
        # it holds this many (a backend's bookkeeping, so a full share costs no scans)
        self.reclaim_floor = 0

    def log_once(self, what: str, message: str, *args: object) -> None:
        """A warning the first time this connection is refused ``what``."""
        if what not in self.logged:
            self.logged.add(what)
            log.warning("%s: " + message, self.peer, *args)


class DescriptorBudget:
    """Descriptors backends hold for clients: open files and nodes' descriptors.

    ``reserve`` is kept for what is not a client's file: listening and accepted
    sockets, logs, images, pipes; ``total`` is what backends may hold in all, and
    ``per_connection`` what the descriptors one connection's requests opened may
    be of it: its open files, and the nodes' descriptors its walks opened that
    the backend has not closed again (it closes the reopenable ones of a
    connection at its share first, so only files, and nodes that cannot be
    reopened, as an unlinked file's, fill a share).
    """

    def __init__(self, limit: int) -> None:
        self.held = 0
        # the server's max_connections once hold_connections sized the reserve for
        # them; until then (a backend used on its own) an eighth of the limit
        self.connections: int | None = None
        self.configure(limit)

    def configure(self, limit: int) -> None:
        self.limit = limit
        if self.connections is None:
            self.reserve = max(SERVER_DESCRIPTORS, limit // 8)
        else:
            self.reserve = SERVER_DESCRIPTORS + self.connections
        self.total = max(16, limit - self.reserve)
        self.per_connection = max(8, self.total // 4)

    def hold_connections(self, wanted: int) -> int:
        """Keep the reserve for ``wanted`` connections' sockets plus the server's own
        descriptors, the rest for backends; returns how many connections fit, fewer
        than ``wanted`` when the limit cannot also leave backends half of it (at 256,
        a connection's share is then 32: 16 files walked to and opened).
        ValueError when not even one fits."""
        fits = self.limit - SERVER_DESCRIPTORS - self.limit // 2
        if fits < 1:
            raise ValueError(f"the descriptor limit (RLIMIT_NOFILE) of {self.limit} cannot "
                             f"hold the server's {SERVER_DESCRIPTORS} descriptors, one "
                             "connection and half of it for clients' files: raise it "
                             "(LimitNOFILE=, ulimit -n)")
        self.connections = min(wanted, fits)
        self.configure(self.limit)
        return self.connections

    def check_open(self, account: ConnectionAccount | None) -> None:
        """Before a descriptor is opened for ``account`` (None: no connection, as in a
        test calling a backend directly): EMFILE when this connection's share is
        spent, as open(2) past RLIMIT_NOFILE; ENFILE when the total is, as past
        fs.file-max."""
        if account is not None and account.held >= self.per_connection:
            account.log_once("emfile", "%d descriptors held, the share of one connection: "
                             "opens and walks to new files refused with EMFILE", account.held)
            raise OSError(errno.EMFILE, "too many open files on this connection")
        if self.held >= self.total:
            if account is not None:
                account.log_once("enfile", "the server's %d descriptors for clients are "
                                 "all held: opens refused with ENFILE", self.total)
            raise OSError(errno.ENFILE, "too many open files in the server")

    def opened(self, account: ConnectionAccount | None) -> None:
        """A descriptor now exists for ``account`` (checked by check_open before)."""
        self.held += 1
        if account is not None:
            account.held += 1

    def closed(self, account: ConnectionAccount | None) -> None:
        self.held -= 1
        if account is not None:
            account.held -= 1

    def full(self) -> bool:
        return self.held >= self.total


def _current_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return UNLIMITED if soft == resource.RLIM_INFINITY else soft


def raise_descriptor_limit() -> int:
    """At start-up: raise RLIMIT_NOFILE's soft limit to the hard one where allowed (as
    systemd recommends for servers that need many descriptors), size BUDGET from the
    result, and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # a hard limit above fs.nr_open
            log.debug("descriptor limit stays at %d: %s", soft, exc)
    BUDGET.configure(_current_limit())
    log.debug("descriptors: limit %d, %d kept for sockets and files of the server, %d for "
             "clients' files, at most %d for one connection", BUDGET.limit, BUDGET.reserve,
             BUDGET.total, BUDGET.per_connection)
    return BUDGET.limit


#: the process's budget, sized from the limit at import and again at start-up
BUDGET = DescriptorBudget(_current_limit())
