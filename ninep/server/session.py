"""A connection's 9P session: negotiated msize, the fid table, identities, and dispatch."""

from __future__ import annotations

import asyncio
import copy
import errno
import grp
import logging
import os
import pwd
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Coroutine

from ninep.server.auth import AuthExchange, ConnectionProof
from ninep.vfs.idmap import NOBODY
from ninep.vfs.locks import LockManager
from ninep.vfs.namespace import Location, Namespace
from ninep.vfs.narrowed import STALE, ReadOnlyHandle, StaleHandle
from ninep.vfs.node import Cred, Handle
from ninep.vfs.policy import (
    KEPT,
    READ_ONLY,
    REVOKED,
    AttachRequest,
    ConnectionContext,
    Limits,
    Peer,
    Policy,
    Rule,
    Selection,
    shown,
)
from ninep.wire import messages as m
from ninep.wire.constants import XATTR_REPLACE

__all__ = [
    "CRED_CACHE_SIZE",
    "HANDLERS",
    "Attachment",
    "Fid",
    "Handler",
    "Reply",
    "ServerLimits",
    "Session",
    "XattrWrite",
    "forget_creds",
    "handles",
    "resolve_cred",
    "start_lookups",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class XattrWrite:
    """A fid turned by Txattrcreate into the value being written (set at clunk)."""

    name: str
    size: int
    flags: int
    buf: bytearray = field(default_factory=bytearray)


@dataclass(slots=True, eq=False)
class Fid:
    """What one fid points at: a namespace location, and once opened, a Handle.

    ``parent``/``name`` record the last walk step, for Trename and Tremove,
    the two messages that name a file by fid alone.
    """

    ns: Namespace
    loc: Location
    cred: Cred
    handle: Handle | None = None
    flags: int = 0
    parent: Location | None = None
    name: str = ""
    xattr_value: bytes | None = None  # a Txattrwalk fid: the value to read
    xattr_write: XattrWrite | None = None
    auth: AuthExchange | None = None  # a Tauth afid: the exchange (ninep/server/auth.py)
    # where this fid's listing ends: a namespace cookie, recorded at its first Treaddir
    # and at each Treaddir from offset 0 (Namespace.listing_end)
    listing_end: int | None = None

    def clone(self) -> Fid:
        return Fid(self.ns, self.loc, self.cred, parent=self.parent, name=self.name)


@dataclass(slots=True, eq=False)
class Attachment:
    """One Tattach as granted, kept while a fid uses its namespace view, so that a
    reload can narrow it (Session.review)."""

    request: AttachRequest
    rule: Rule
    read_only: bool
    revoked: bool = False

    def __str__(self) -> str:
        request = self.request
        n_uname = -1 if request.n_uname == m.NONUNAME else request.n_uname
        return (f"the attach of uname={shown(request.uname)} n_uname={n_uname} "
                f"aname={shown(request.aname)} to namespace {self.rule.namespace.name!r} "
                f"(policy {self.rule.name!r})")


#: The server's knobs: the one limits type (vfs/policy.py), which a policy narrows.
ServerLimits = Limits


Reply = m.Message | m.Encoded
Handler = Callable[["Session", Any], Coroutine[Any, Any, Reply]]
HANDLERS: dict[type[m.Message], Handler] = {}


def handles(*types: type[m.Message]) -> Callable[[Handler], Handler]:
    """Register a handler for T-message classes (one table, checked for duplicates)."""
    def register(fn: Handler) -> Handler:
        for t in types:
            if t in HANDLERS:
                raise TypeError(f"two handlers for {t.__name__}")
            HANDLERS[t] = fn
        return fn
    return register


CRED_CACHE_SIZE = 4096  # identities remembered, least recently used forgotten first
LOGIN_NAME_MAX = 256  # glibc's: no passwd entry has a longer name
_NOBODY = Cred(NOBODY, NOBODY)
_cred_cache: OrderedDict[tuple[str, int], Cred] = OrderedDict()
_lookups: ThreadPoolExecutor | None = None


async def resolve_cred(uname: str, n_uname: int) -> Cred:
    """The identity of an attach: n_uname if given, else uname looked up in passwd.

    An unknown uname is nobody (65534), as diod and the Linux client assume. A
    uname holding a NUL is EINVAL: no passwd entry can have it, and a C server
    would read only what comes before the NUL (another user's name, perhaps).
    Lookups (NSS: files, LDAP, ...) run on a thread of their own, never on the
    event loop; the last CRED_CACHE_SIZE identities are remembered, and a reload
    forgets them all (forget_creds), as passwd may have changed.
    """
    if "\0" in uname:
        log.debug("attach refused: uname %s holds a NUL", shown(uname))
        raise OSError(errno.EINVAL, "a uname cannot hold a NUL")
    if n_uname == m.NONUNAME and len(uname) > LOGIN_NAME_MAX:
        return _NOBODY  # no user has such a name; not remembered, so the cache's size
        # stays bounded by entries of at most LOGIN_NAME_MAX characters
    key = (uname, n_uname) if n_uname == m.NONUNAME else ("", n_uname)
    cred = _cred_cache.get(key)
    if cred is not None:
        _cred_cache.move_to_end(key)
        return cred
    cred = await asyncio.get_running_loop().run_in_executor(start_lookups(), _look_up, uname,
                                                            n_uname)
    _cred_cache[key] = cred
    while len(_cred_cache) > CRED_CACHE_SIZE:
        _cred_cache.popitem(last=False)
    return cred


def start_lookups() -> ThreadPoolExecutor:
    """The one thread that looks identities up, started now if it is not running (the
    server starts it at start-up, so that its thread count stays what it was)."""
    global _lookups
    if _lookups is None:
        _lookups = ThreadPoolExecutor(1, thread_name_prefix="ninep-passwd")
        _lookups.submit(int)  # the worker thread starts with its first task
    return _lookups


def forget_creds() -> None:
    """Forget the remembered identities (a reload: passwd or groups may have changed)."""
    _cred_cache.clear()


def _look_up(uname: str, n_uname: int) -> Cred:
    uid = n_uname
    gid = n_uname
    name = None
    try:
        entry = pwd.getpwuid(uid) if n_uname != m.NONUNAME else pwd.getpwnam(uname)
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    except (KeyError, OverflowError, ValueError):
        if n_uname == m.NONUNAME:
            uid = gid = NOBODY
    groups = frozenset(_groups_of(name, gid)) if name else frozenset()
    return Cred(uid, gid, groups)


def _groups_of(name: str, gid: int) -> list[int]:
    try:
        return os.getgrouplist(name, gid)
    except (KeyError, OSError):  # pragma: no cover - nss failures
        return [g.gr_gid for g in grp.getgrall() if name in g.gr_mem]


class Session:
    """The protocol state of one connection; handlers read and change it."""

    def __init__(self, policy: Policy | Callable[[], Policy], locks: LockManager, peer: Peer,
                 conn_id: int, limits: ServerLimits,
                 context: ConnectionContext | None = None) -> None:
        self._policy = policy
        self.locks = locks
        self.peer = peer
        self.conn_id = conn_id
        self.limits = limits
        self.msize = limits.max_msize
        self.versioned = False
        self.fids: dict[int, Fid] = {}
        self.auth_proofs: list[ConnectionProof] = []  # kept across Tversion (ninep/server/auth.py)
        self.context = context or ConnectionContext()
        # each attach's own namespace view -> what it was granted; an entry goes with
        # the last fid that uses the view
        self.attachments: weakref.WeakKeyDictionary[Namespace, Attachment] = (
            weakref.WeakKeyDictionary())
        self.narrowed = False  # some attach was narrowed: fid() checks each fid it gives
        self.warned_unencodable = False  # error_reply: one warning per connection
        self.xattr_pending = 0  # bytes declared by the Txattrcreate fids not yet clunked

    @property
    def policy(self) -> Policy:
        """The policy new attaches go through (the server's current one, after a reload)."""
        policy = self._policy
        return policy if isinstance(policy, Policy) else policy()

    async def select(self, request: AttachRequest) -> Selection:
        """The namespace, credential and limits of one attach; EACCES if no policy matches.
        The rule's limits tighten this connection's (they never loosen them)."""
        policy = self.policy
        selection = await policy.attach(request, self.context)
        # a view of its own: a reload that narrows this attach makes it read-only,
        # which must not touch other attaches (a view costs one shallow copy)
        selection = replace(selection, namespace=copy.copy(selection.namespace))
        attachment = Attachment(request, selection.rule, selection.rule.read_only)
        if self.policy is not policy:  # a reload came while the namespace was being built
            review = self.policy.review(request, selection.rule, attachment.read_only)
            if review.verdict == REVOKED:
                log.warning("%s: attach refused: a reload came meanwhile and %s",
                            self.peer, review.reason)
                raise OSError(errno.EACCES, "no longer granted")
            if review.verdict == READ_ONLY:
                attachment.read_only = selection.namespace.read_only = True
        self._tighten(selection.limits)
        self.attachments[selection.namespace] = attachment
        return selection

    def review(self, policy: Policy, authorized: frozenset[str] = frozenset()) -> tuple[int, int]:
        """A reload made ``policy`` current: narrow at once every attach whose rights
        shrank (read-only on every fid and open file, or revoked: ESTALE), logging
        each; one whose rights grew keeps its old ones until it attaches again.
        A key proven by Tauth counts only if it is still among the ``authorized``
        key ids (fingerprints, comments), for attaches made and NOFID attaches to come.
        Returns how many were made read-only and how many were revoked."""
        self.auth_proofs = [replace(proof, key_ids=proof.key_ids & authorized)
                            for proof in self.auth_proofs if proof.key_ids & authorized]
        narrowed = revoked = 0
        for view, attachment in list(self.attachments.items()):
            if attachment.revoked:
                continue
            if attachment.request.key_ids - authorized:
                attachment.request = replace(
                    attachment.request, key_ids=attachment.request.key_ids & authorized)
            review = policy.review(attachment.request, attachment.rule, attachment.read_only)
            if review.verdict == KEPT:
                continue
            self.narrowed = True
            fids = [fid for fid in self.fids.values() if fid.ns is view]
            if review.verdict == READ_ONLY:
                attachment.read_only = view.read_only = True  # the view is this attach's own
                for fid in fids:
                    if fid.handle is not None:
                        fid.handle = ReadOnlyHandle(fid.handle)
                narrowed += 1
            else:
                attachment.revoked = True
                for fid in fids:
                    self._revoke(fid)
                revoked += 1
            log.warning("%s: reload: %s is %s (%d fids): %s", self.peer, attachment,
                        "read-only now" if review.verdict == READ_ONLY else "revoked",
                        len(fids), review.reason)
        return narrowed, revoked

    def _tighten(self, limits: Limits | None) -> None:
        if limits is None:  # the policy keeps the server's
            return
        current = self.limits
        self.limits = replace(
            current,
            max_fids=min(current.max_fids, limits.max_fids or current.max_fids),
            max_inflight=min(current.max_inflight, limits.max_inflight or current.max_inflight))
        if limits.max_msize < self.msize:
            # msize was agreed at Tversion; replies (Rread, Rreaddir) keep below the cap
            self.msize = limits.max_msize

    # --- the fid table ---------------------------------------------------

    def fid(self, number: int) -> Fid:
        fid = self.fids.get(number)
        if fid is None:
            raise OSError(errno.EBADF, f"unknown fid {number}")
        if self.narrowed:
            self._narrow(fid)
        return fid

    def _narrow(self, fid: Fid) -> None:
        """Narrow ``fid`` as its attach was: a request that was running during the
        reload (a walk, an open, a create) may have bound or opened it since."""
        attachment = self.attachments.get(fid.ns)
        if attachment is None:
            return
        if attachment.revoked:
            self._revoke(fid)
        elif attachment.read_only and fid.handle is not None and not isinstance(
                fid.handle, ReadOnlyHandle):
            fid.handle = ReadOnlyHandle(fid.handle)

    def check_new_fid(self, number: int) -> None:
        if number in self.fids:
            raise OSError(errno.EBADF, f"fid {number} is already in use")
        if number == m.NOFID:
            raise OSError(errno.EBADF, "NOFID cannot be bound")
        if len(self.fids) >= self.limits.max_fids:
            log.warning("%s: fid limit of %d reached", self.peer, self.limits.max_fids)
            raise OSError(errno.EMFILE, f"too many fids (limit {self.limits.max_fids})")

    def bind(self, number: int, fid: Fid) -> None:
        self.check_new_fid(number)
        self.fids[number] = fid

    def begin_xattr_write(self, fid: Fid, pending: XattrWrite) -> None:
        """Make ``fid`` the value of a Txattrcreate, its declared size counted against
        ``max_xattr_pending``: ENOMEM past it, what Linux's setxattr answers when it
        cannot allocate the value's buffer (ENOSPC would say the file system is full)."""
        if self.xattr_pending + pending.size > self.limits.max_xattr_pending:
            log.debug("%s: Txattrcreate of %d bytes refused: %d pending (limit %d)", self.peer,
                      pending.size, self.xattr_pending, self.limits.max_xattr_pending)
            raise OSError(errno.ENOMEM, "too many xattr value bytes pending on this connection")
        self.xattr_pending += pending.size
        fid.xattr_write = pending

    def _drop_xattr_write(self, fid: Fid) -> XattrWrite | None:
        pending, fid.xattr_write = fid.xattr_write, None
        if pending is not None:
            self.xattr_pending -= pending.size
        return pending

    async def release(self, fid: Fid) -> None:
        """Close what a clunked fid holds (its Handle, or apply a pending xattr write)."""
        pending = self._drop_xattr_write(fid)
        if pending is not None:
            await _finish_xattr_write(fid, pending)
        if fid.handle is not None:
            handle, fid.handle = fid.handle, None
            await handle.close()

    async def clunk_all(self) -> None:
        """Forget every fid (Tversion reset, connection closed); errors are only logged."""
        fids, self.fids = list(self.fids.values()), {}
        for fid in fids:
            try:
                await self.release(fid)
            except OSError as exc:  # a client can cause these (a short xattr value): no traceback
                log.debug("%s: clunking a fid at reset or disconnect: %s", self.peer, exc)
            except Exception:
                log.exception("%s: error while clunking a fid", self.peer)
        self.locks.release_connection(self.conn_id)

    def _revoke(self, fid: Fid) -> None:
        """Every later request on ``fid`` answers ESTALE, but Tclunk, which closes what
        it held (a request already running may still be using its handle)."""
        fid.loc = fid.parent = STALE
        fid.xattr_value = None
        self._drop_xattr_write(fid)
        if fid.handle is not None and not isinstance(fid.handle, StaleHandle):
            fid.handle = StaleHandle(fid.handle)

    # --- dispatch --------------------------------------------------------

    def error_reply(self, exc: Exception, msg: m.Message | type[m.Message]) -> m.Rlerror:
        """The one place an exception becomes Rlerror: an OSError keeps its errno; a
        reply the wire cannot carry (EncodeError, from a handler or from the transport
        encoding its reply) is one warning per connection and an errno that fits;
        anything else is a bug, logged with its traceback and answered EIO."""
        if isinstance(exc, OSError):
            return m.Rlerror(exc.errno or errno.EIO)
        kind = msg if isinstance(msg, type) else type(msg)
        if isinstance(exc, m.EncodeError):
            if not self.warned_unencodable:
                self.warned_unencodable = True
                log.warning("%s: a %s cannot be sent, answered with an error: %s", self.peer,
                            kind.__name__, exc)
            else:
                log.debug("%s: a %s cannot be sent: %s", self.peer, kind.__name__, exc)
            return m.Rlerror(_UNENCODABLE_ERRNO.get(kind, errno.EIO))
        log.error("%s: %s failed", self.peer, kind.__name__, exc_info=exc)
        return m.Rlerror(errno.EIO)


# a target longer than the reply can carry is "a name too long", as readlink(2) says
_UNENCODABLE_ERRNO: dict[type[m.Message], int] = {m.Treadlink: errno.ENAMETOOLONG,
                                                  m.Rreadlink: errno.ENAMETOOLONG}




async def _finish_xattr_write(fid: Fid, pending: XattrWrite) -> None:
    """Linux sets an xattr at the clunk of the Txattrcreate fid.

    Size 0 removes it, as QEMU does: Linux's removexattr arrives as size 0
    with XATTR_REPLACE (ENODATA if absent); an empty value cannot be told apart.
    Fewer bytes written than declared sets nothing and is EINVAL, as QEMU's
    v9fs_xattr_fid_clunk answers when copied_len != len.
    """
    if len(pending.buf) != pending.size:
        raise OSError(errno.EINVAL, f"xattr {pending.name}: wrote {len(pending.buf)} of "
                      f"{pending.size} bytes")
    if pending.size == 0:
        try:
            await fid.ns.xattr_remove(fid.loc, pending.name, fid.cred)
        except OSError as exc:
            if exc.errno != errno.ENODATA or pending.flags & XATTR_REPLACE:
                raise
    else:
        await fid.ns.xattr_set(fid.loc, pending.name, bytes(pending.buf), pending.flags,
                               fid.cred)
