"""Host calls under the requesting user's identity: per-thread fsuid, fsgid and groups.

With ``security_model = "passthrough"`` the server runs as root, so without
this the kernel would check every host call against root and only vfs/'s
Python checks would stand between a client and the whole export. As diod
(and QEMU's proxy helper) do, the synchronous steps of a request's host calls
run under the attaching user's fsuid/fsgid and supplementary groups, so a bug
above the kernel cannot give a client more than that user's rights. The
Python checks stay (other models and backends rely on them).

Linux keeps credentials per thread, which is what makes this work in a
threaded server: setfsuid(2)/setfsgid(2) change the calling thread only, and
so does the raw setgroups system call. glibc's setgroups() is not used: it
changes every thread of the process (the setxid broadcast), so the groups go
through syscall(SYS_setgroups). A thread whose fsuid leaves 0 loses the
filesystem capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, ...) and
gets them back when it returns to 0 (capabilities(7), "Effect of user ID
changes on capabilities").

Where: the event-loop thread switches around each synchronous step of a
decorated node method (``under_caller``: never across an await, restored
before the loop runs anything else); a call sent to a pool thread carries
the identity active when it was sent (``carry``), and pool threads, which
run only this backend's calls, keep theirs until a call wants another.
Attaches as uid 0 keep root's identity and capabilities (CAP_FSETID, ...):
nothing is switched for them. A user's open of a regular file is not switched
either when io_uring is there: userring.py opens it under a personality of the
user (registered here, through ``under``), which costs the thread no switch.

Cost: each of the three calls makes the kernel copy the thread's credentials
and swap them in (prepare_creds, commit_creds; setgroups also allocates and
sorts a group_info), 1.5-2.5 us each here. Back to the server, only fsuid and
fsgid are restored: a thread whose fsuid is 0 holds CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID and CAP_CHOWN again, so on a
filesystem whose permissions the kernel decides (generic_permission, POSIX
ACLs) no outcome depends on its supplementary groups, while fsgid still names
the group of what root creates. The user's groups stay on the thread until a
step wants other ones, so a user's next step skips setgroups. A filesystem
that decides from the caller's groups itself (NFS with root squashing, FUSE,
SMB) would see them: once any passthrough export is on a filesystem not known
to be local (``_LOCAL_TYPES``), every return restores the groups as well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import threading
import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ninep.vfs.caller import CALLER
from ninep.vfs.node import Cred

from .hostcalls import host_statfs

if TYPE_CHECKING:
    from .ownership import Ownership

__all__ = ["HostCred", "SearchGrants", "as_server", "carry", "host_cred", "stepped",
           "switching", "thread_cred", "under", "under_caller"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: syscall(2) numbers of setgroups (the 32-bit gid_t one) where we know them
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159, "ppc64le": 81, "s390x": 206,
                  "riscv64": 159, "loongarch64": 159}
_CACHE_LIMIT = 256  # distinct credentials kept in host form
_GRANTS_PER_DIRECTORY = 16
#: statfs(2) f_type of the filesystems whose permissions the kernel decides itself, where
#: a thread with fsuid 0 (and so CAP_DAC_OVERRIDE, ...) gets the same answer whatever its
#: supplementary groups: ext2/3/4, XFS, Btrfs, tmpfs, ramfs, F2FS
_LOCAL_TYPES = frozenset({0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0x858458F6,
                          0xF2F52010})


class _Calls:
    """The three calls, bound once: ctypes converts nothing per call (each HostCred
    holds its arguments as C values), and only setgroups copies errno, the one of the
    three that reports a failure."""

    __slots__ = ("setfsgid", "setfsuid", "syscall")

    def __init__(self, libc: str) -> None:
        plain = ctypes.CDLL(libc, use_errno=False)
        errno_kept = ctypes.CDLL(libc, use_errno=True)
        self.setfsuid, self.setfsgid = plain.setfsuid, plain.setfsgid
        self.setfsuid.restype = self.setfsgid.restype = ctypes.c_int
        self.syscall = errno_kept.syscall
        self.syscall.restype = ctypes.c_long


def _load() -> tuple[_Calls, ctypes.c_long] | None:
    number = _SYS_SETGROUPS.get(platform.machine())
    if number is None:
        return None
    try:
        return _Calls(ctypes.util.find_library("c") or "libc.so.6"), ctypes.c_long(number)
    except (OSError, AttributeError):  # pragma: no cover - not a Linux C library
        return None


_loaded = _load()
_calls, _SETGROUPS = _loaded if _loaded is not None else (None, ctypes.c_long(-1))
_UNCHANGED = ctypes.c_uint(0xFFFFFFFF)  # setfsuid(-1) changes nothing, answers the current


class HostCred:
    """One Cred in the form the system calls take."""

    __slots__ = ("c_count", "c_gid", "c_uid", "gid", "group_key", "groups", "ngroups", "uid")

    def __init__(self, uid: int, gid: int, groups: list[int]) -> None:
        self.uid = uid
        self.gid = gid
        self.ngroups = len(groups)
        self.group_key = tuple(groups)
        self.groups = (ctypes.c_uint * max(len(groups), 1))(*groups)
        self.c_uid, self.c_gid = ctypes.c_uint(uid), ctypes.c_uint(gid)
        self.c_count = ctypes.c_long(len(groups))

    def enter(self) -> None:
        """This thread's fsuid, fsgid and groups become these (``_take``)."""
        _take(self, _state)


_SERVER = HostCred(os.geteuid(), os.getegid(), os.getgroups())
_keep_groups = True  # a return to the server leaves a user's groups (see the docstring)


def _take(cred: HostCred, state: _ThreadState) -> None:
    """This thread's (``state``'s) fsuid, fsgid and groups become ``cred``'s (switching()
    checked once that the kernel lets us: setfsuid reports no failure). The groups call
    is left out where the thread holds those groups already, and on a return to the
    server's identity while ``_keep_groups`` says a user's groups change nothing for it."""
    calls = _calls
    assert calls is not None
    if state.groups != cred.group_key and (cred is not _SERVER or not _keep_groups):
        _set_groups(cred)
    calls.setfsgid(cred.c_gid)
    calls.setfsuid(cred.c_uid)


def _set_groups(cred: HostCred) -> None:
    assert _calls is not None
    if _calls.syscall(_SETGROUPS, cred.c_count, cred.groups) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setgroups: {os.strerror(code)}")
    _state.groups = cred.group_key


class _ThreadState(threading.local):
    current: HostCred | None = None  # the identity this thread has now (None: the server's)
    # A new thread starts with the credentials of the thread that made it, which may be
    # a user's: a pool thread spawned by a submit from a step. Until this thread has
    # switched once, what it holds is unknown, and its first call switches explicitly.
    known = False
    depth = 0  # nested under_caller steps on this thread
    groups: tuple[int, ...] | None = None  # the supplementary groups it holds (None: unknown)


_state = _ThreadState()
_creds: dict[Cred, HostCred] = {}


def switching(model: Ownership, root_fd: int) -> bool:
    """Whether a backend of ``model`` exporting ``root_fd`` makes host calls under its
    callers' identities: the passthrough model, with the server running as root where
    the switch works. Every passthrough export comes here (whatever its model), so
    that one on a filesystem not known to be local ends ``_keep_groups``."""
    if _calls is not None and _keep_groups and _fs_type(root_fd) not in _LOCAL_TYPES:
        _stop_keeping_groups()
    if model.name != "passthrough" or os.geteuid() != 0 or _calls is None:
        return False
    global _works
    if _works is None:
        _works = _try_switch()
        if not _works:
            log.warning("setfsuid/setfsgid/setgroups refused (no CAP_SETUID/CAP_SETGID?): "
                        "passthrough host calls run as the server, checked in Python only")
    return _works


_works: bool | None = None


def _fs_type(fd: int) -> int | None:
    """statfs(2)'s f_type of the filesystem holding ``fd``; None if it cannot be read."""
    try:
        return host_statfs(fd).fstype  # V9FS_MAGIC where only fstatvfs is there: not local
    except OSError:
        return None


def _stop_keeping_groups() -> None:
    """From now on a return to the server restores its groups too. Backends are opened on
    the event loop's thread, the one thread that may hold a user's groups outside a step
    (a pool thread runs only its own export's calls): it gets the server's back now."""
    global _keep_groups
    _keep_groups = False
    if _works and _state.current is None and _state.groups != _SERVER.group_key:
        _set_groups(_SERVER)
    log.info("a passthrough export on a filesystem not known to be local: returns to the "
             "server's identity restore its supplementary groups too")


def _try_switch() -> bool:
    assert _calls is not None
    probe = HostCred(65534, 65534, [65534])
    try:
        _take(probe, _state)
        ok = int(_calls.setfsuid(_UNCHANGED)) == 65534
    except OSError:
        ok = False
    _take(_SERVER, _state)
    if _state.groups not in (None, _SERVER.group_key):
        _set_groups(_SERVER)  # the probe's groups are nobody's business
    return ok and int(_calls.setfsuid(_UNCHANGED)) == _SERVER.uid


def host_cred(fs: Any) -> HostCred | None:
    """The identity a call into the backend ``fs`` now runs under; None: the server's."""
    global _last
    if not fs.host_identity:
        return None
    current = CALLER.get()
    if current is None or current[1] is not fs:
        return None  # not called by the namespace for this mount (an overlay's copy-up)
    cred = current[0]
    if cred is _last[0]:
        return _last[1]  # a fid's cred is one object for its attach's life
    if cred.uid == 0:
        return None  # root keeps its capabilities
    found = _creds.get(cred)
    if found is None:
        if len(_creds) >= _CACHE_LIMIT:
            _creds.clear()
        found = _creds[cred] = HostCred(cred.uid, cred.gid, sorted(cred.groups | {cred.gid}))
    _last = (cred, found)
    return found


_last: tuple[Cred | None, HostCred | None] = (None, None)  # the latest non-root lookup


def _switch(to: HostCred | None) -> None:
    state = _state
    _take(to or _SERVER, state)
    state.current = to
    state.known = True


def under_caller(method: Callable[P, Coroutine[Any, Any, T]]
                 ) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate a node method: each synchronous step of it runs under the caller's identity
    (the namespace's CALLER), switched back to the server's at every await."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        coro = method(*args, **kwargs)
        cred = host_cred(args[0].fs)  # type: ignore[attr-defined]
        if cred is None:
            return coro
        return _stepped(coro, cred)  # (typing.cast would be one more call per step)

    return wrapper


def under(cred: HostCred, func: Callable[[], T]) -> T:
    """``func()`` with this thread under ``cred`` (userring.py registers a personality)."""
    _enter(cred)
    try:
        return func()
    finally:
        _leave()


def thread_cred() -> HostCred | None:
    """The user identity this thread runs under now; None: the server's."""
    return _state.current


def stepped(coro: Coroutine[Any, Any, T], cred: HostCred) -> Coroutine[Any, Any, T]:
    """``coro`` with each synchronous step under ``cred`` (an open file's later writes)."""
    return _stepped(coro, cred)


@types.coroutine
def _stepped(coro: Coroutine[Any, Any, T], cred: HostCred) -> Generator[Any, Any, T]:
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            _enter(cred)
        except BaseException:
            coro.close()  # never started, or stopped at an await: nothing half done
            raise
        try:
            yielded = coro.send(sent) if thrown is None else coro.throw(thrown)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            _leave()
        try:
            sent, thrown = (yield yielded), None
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # handed to the coroutine, as await does
            sent, thrown = None, exc


def _enter(cred: HostCred) -> None:
    state = _state
    depth = state.depth
    if depth:
        if state.current is not cred:
            raise RuntimeError("a host call under two identities at once")
        state.depth = depth + 1
        return
    # _take(cred, state), inline: this and _leave run around every switched step
    calls = _calls
    assert calls is not None
    if state.groups != cred.group_key:
        _set_groups(cred)
    calls.setfsgid(cred.c_gid)
    calls.setfsuid(cred.c_uid)
    state.current = cred
    state.known = True
    state.depth = 1


def _leave() -> None:
    state = _state
    depth = state.depth = state.depth - 1
    if not depth:
        _take(_SERVER, state)
        state.current = None


class SearchGrants:
    """The users the kernel let search one directory, and in which epoch.

    A walk's only permission check in the kernel is search (exec) permission on the
    directory (may_lookup), decided by its mode, owner, group and ACL. inotify reports
    every change of those (IN_ATTRIB, containment.py's epoch), so once a walk under a
    user's identity succeeded, later walks by that user in the same epoch need not
    switch identity (three system calls and three back, about 14 us here) to get the
    answer the kernel already gave. A directory without a watch keeps no grant.
    """

    __slots__ = ("_granted",)

    def __init__(self) -> None:
        self._granted: dict[HostCred, int] = {}

    def walk(self, epoch: int, cred: HostCred, step: Callable[[str], T], name: str,
             watched: Callable[[], bool]) -> T:
        """``step(name)``, the lookup of ``name`` in this directory, under ``cred`` unless
        the kernel let ``cred`` search it in ``epoch`` (read before any such lookup).
        ``watched``: whether a change of the directory would advance the epoch now (a
        watch the kernel drops later advances it too, so a grant needs it only here)."""
        if self._granted.get(cred) == epoch:
            return step(name)
        _enter(cred)
        try:
            done = step(name)
        finally:
            _leave()
        if watched():
            if len(self._granted) >= _GRANTS_PER_DIRECTORY:
                self._granted.clear()
            self._granted[cred] = epoch
        return done


def carry(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` for a pool thread of a switching backend, to run under the identity this
    thread has now (the server's outside a step)."""
    return functools.partial(_in_pool_as, _state.current, func)


def _in_pool_as(cred: HostCred | None, func: Callable[..., T], *args: object) -> T:
    state = _state
    if state.current is not cred or not state.known:  # pool threads keep the last one
        _switch(cred)
    return func(*args)


class as_server:  # a context manager, named as one reads it: "with as_server():"
    """The server's own identity for a moment inside a step (adding an inotify watch
    needs read access the user may lack), then the step's again."""

    __slots__ = ("_cred",)

    def __enter__(self) -> None:
        self._cred = _state.current
        if self._cred is not None:
            _take(_SERVER, _state)

    def __exit__(self, *exc: object) -> None:
        if self._cred is not None:
            _take(self._cred, _state)

