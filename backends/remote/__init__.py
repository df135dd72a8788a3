"""The 9p backend: a tree of another 9P2000.L server, imported through ninep.clients.

From code: ``backend = await open_remote(RemoteSpec("unix:///run/back.sock", aname="x"))``
(what ``--mount /p=9p:unix:///run/back.sock,aname=x`` opens); close it with
``await backend.close()``. docs/backends.md says what each option does and what
survives a reconnect.
"""

from __future__ import annotations

import errno
import logging
import ssl
from typing import ClassVar

from ninep.backends.registry import (
    BackendConfigError,
    Options,
    option_bool,
    option_int,
    option_str,
)
from ninep.clients import DEFAULT_MSIZE
from ninep.clients.address import parse_address
from ninep.vfs.node import Backend
from ninep.wire.messages import NONUNAME

from .link import Link, RemoteSpec
from .nodes import Cookies, RemoteHandle, RemoteNode

__all__ = ["RemoteBackend", "RemoteHandle", "RemoteNode", "RemoteSpec", "open_backend",
           "open_remote"]

log = logging.getLogger(__name__)


class RemoteBackend(Backend):
    """One import: a connection to the back server and the root fid of one attach."""

    kind: ClassVar[str] = "9p"
    # vfs/ checks a client's permissions against the back server's owners and modes, as
    # for any backend; the back server then checks the mount's own identity too.
    keeps_ownership: ClassVar[bool] = True

    def __init__(self, link: Link, read_only: bool) -> None:
        self.link = link
        self.read_only = read_only
        self.cookies = Cookies()
        spec = link.spec
        self.acts_as_root = spec.n_uname == 0 or (spec.uname == "root"
                                                  and spec.n_uname == NONUNAME)
        _, root, generation = link.current()
        node = RemoteNode(self, root, generation, ())
        node.keep_fid()  # the link's root fid: the link clunks it, not the node
        self.root = node

    async def close(self) -> None:
        await self.link.close()


async def open_remote(spec: RemoteSpec, read_only: bool = False) -> RemoteBackend:
    """Connect to ``spec.url``, attach, and return the backend; OSError (ECONNREFUSED,
    EACCES for a refused Tauth key, ETIMEDOUT...) when the first attach fails."""
    link = Link(spec)
    try:
        await link.connect()
    except TimeoutError:
        raise OSError(errno.ETIMEDOUT, f"{spec.url}: no attach within {spec.timeout} s") \
            from None
    except ConnectionError as exc:  # the server broke off or refused 9P2000.L
        raise OSError(errno.ECONNREFUSED, f"{spec.url}: {exc}") from None
    return RemoteBackend(link, read_only)


async def open_backend(source: str, options: Options, read_only: bool) -> RemoteBackend:
    """The registry's factory: source is the URL; options aname, uname, uid, ca, cert,
    key, auth_key, msize, timeout, readahead (docs/backends.md)."""
    try:
        address = parse_address(source)
    except ValueError as exc:
        raise BackendConfigError(str(exc)) from None
    if "://" not in source:
        raise BackendConfigError(f"9p source {source!r}: expected tcp://HOST:PORT, "
                                 "unix:///PATH or tls://HOST:PORT")
    uid = option_int(options, "uid", None)
    timeout = option_int(options, "timeout")
    assert timeout is not None  # declared with a default in KINDS
    spec = RemoteSpec(
        url=source, aname=option_str(options, "aname"),  # defaults: the registry's KINDS
        uname=option_str(options, "uname"),
        n_uname=NONUNAME if uid is None else uid,
        ca=option_str(options, "ca") or None, cert=option_str(options, "cert") or None,
        key=option_str(options, "key") or None,
        auth_key=option_str(options, "auth_key") or None,
        msize=option_int(options, "msize", DEFAULT_MSIZE) or DEFAULT_MSIZE,
        timeout=float(timeout),
        readahead=option_bool(options, "readahead"))
    if address.scheme != "tls" and (spec.ca or spec.cert or spec.key):
        raise BackendConfigError(f"9p source {source!r}: ca, cert and key are for tls:// "
                                 "servers only",)
    try:
        return await open_remote(spec, read_only)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BackendConfigError(f"9p backend {source}: {exc}") from None
