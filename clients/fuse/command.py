"""``ninep fuse SERVER MOUNTPOINT``: connect, attach, and serve the tree through FUSE.

The mount runs in the foreground until it is unmounted (``fusermount3 -u``,
``umount``) or the process gets SIGINT/SIGTERM, which unmount it too. The 9P
connection lives on an event loop in a thread of its own; libfuse's threads
hand it their requests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ..address import parse_address
from ..cli_options import add_connection_options, check_connection_options, tls_for
from ..client import Client
from ..errors import ProtocolError
from ..tls import explain_tls_error
from ..tree import Tree

__all__ = ["FuseOptions", "add_fuse_command", "mount"]

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT = 15.0  # seconds for the connect, Tversion and Tattach


class FuseOptions(argparse.Namespace):
    """What ``mount`` needs (the parsed command line)."""

    server: str
    server_name: str | None
    mountpoint: str
    aname: str
    uname: str
    n_uname: int
    msize: int
    key: str | None
    ca: str | None
    cert: str | None
    tls_key: str | None
    options: list[str]
    debug: bool


class _LoopThread:
    """An event loop running in a daemon thread, for the 9P connection."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ninep-fuse-9p",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def mount(args: FuseOptions) -> int:
    """Mount ``args.server`` at ``args.mountpoint``; return when it is unmounted."""
    try:
        from .operations import NinepFUSE, NinepOperations
    except (ImportError, OSError) as exc:  # mfusepy raises OSError when libfuse is missing
        _error(f"FUSE is not available here ({exc}): install ninep[fuse] and libfuse "
               "(Debian: apt install fuse3)")
        return 1
    from .remote import RemoteFS

    if not os.path.isdir(args.mountpoint):
        _error(f"{args.mountpoint}: not a directory")
        return 1
    runner = _LoopThread()
    try:
        try:
            client, tree = runner.run(_connect(args), CONNECT_TIMEOUT)
        except TimeoutError:
            _error(f"{args.server}: cannot connect: timed out")
            return 1
        except ssl.SSLError as exc:
            name = args.server_name or parse_address(args.server).host
            _error(f"{args.server}: {explain_tls_error(exc, name)}")
            return 1
        except OSError as exc:  # refused, unreachable, or the attach was refused
            _error(f"{args.server}: {exc.strerror or exc}")
            return 1
        except ValueError as exc:  # e.g. a --key file that holds no Ed25519 key
            _error(str(exc))
            return 1
        remote = RemoteFS(tree)
        operations = NinepOperations(remote, runner.loop)
        try:
            NinepFUSE(operations, args.mountpoint, foreground=True, debug=args.debug,
                      **_mount_options(args))
        except RuntimeError as exc:  # libfuse's own message is already on stderr
            _error(f"{args.mountpoint}: mount failed ({exc})")
            return 1
        finally:
            runner.run(_close(remote, client))
        return 1 if operations.lost else 0
    finally:
        runner.stop()


async def _connect(args: FuseOptions) -> tuple[Client, Tree]:
    tls = tls_for(args)
    try:
        client = await Client.connect(args.server, args.msize, tls=tls,
                                      server_hostname=args.server_name)
    except ssl.SSLError:
        raise
    except OSError as exc:
        if isinstance(exc, ProtocolError):
            raise
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(exc.errno, f"cannot connect: {reason}") from None
    try:
        tree = await client.attach(args.uname, args.aname, args.n_uname, key=args.key)
    except BaseException:
        await client.close()
        raise
    return client, tree


async def _close(remote: Any, client: Client) -> None:
    try:
        await remote.close_all()
    except (OSError, ConnectionError):
        pass
    await client.close()


def _mount_options(args: FuseOptions) -> dict[str, Any]:
    options: dict[str, Any] = {
        "fsname": f"ninep:{args.server}",
        "subtype": "ninep",
        # The server's qid.path is the inode number, so hard links show as one file.
        "use_ino": True,
        # An open file is a fid that outlives its name: no ".fuse_hidden" renames.
        "hard_remove": True,
        # The kernel checks mode bits against the caller, as for a local file system
        # (the server then checks them again for the attached user).
        "default_permissions": True,
    }
    for item in args.options:
        for option in item.split(","):
            name, sep, value = option.partition("=")
            if name:
                options[name] = value if sep else True
    return options


def _error(message: str) -> None:
    print(f"ninep fuse: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    if args.server_operand is not None:
        args.server = args.server_operand
    problem = check_connection_options(args)
    if problem is not None:
        args.parser.error(problem)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    return mount(args)  # type: ignore[arg-type]  # argparse filled every FuseOptions field


def add_fuse_command(subparsers: Any) -> None:
    """Add the ``fuse`` verb to ``ninep``'s subparsers."""
    description = ("mount a 9P2000.L server's tree through FUSE (no kernel 9p client or root "
                   "needed); runs until unmounted with fusermount3 -u MOUNTPOINT")
    parser = subparsers.add_parser("fuse", help="mount a server through FUSE",
                                   description=description)
    parser.add_argument("server_operand", nargs="?", metavar="SERVER",
                        help="the server (any form --server takes); default: --server")
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPT[,OPT]",
                        help="FUSE mount options, e.g. allow_other, ro, attr_timeout=0 "
                             "(repeatable)")
    parser.add_argument("--debug", action="store_true",
                        help="log every FUSE request (libfuse's -d) and the client's debug lines")
    add_connection_options(parser)
    parser.set_defaults(func=_run, parser=parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m clients.fuse``."""
    parser = argparse.ArgumentParser(prog="ninep")
    add_fuse_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))

