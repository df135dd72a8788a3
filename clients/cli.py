"""The client verbs of the ``ninep`` command: ls, cat, get, put, stat, mkdir, rm, mv, tree."""

from __future__ import annotations

import argparse
import asyncio
import errno
import grp
import os
import pwd
import ssl
import stat as stat_module
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import cache, partial
from typing import Any, TypeVar

from .address import parse_address
from .cli_options import add_connection_options, check_connection_options, tls_for
from .cli_transfer import CHUNK, add_get_arguments, add_put_arguments, get, local_umask, put
from .client import Client
from .errors import ProtocolError, TLSError
from .results import DirEntry, StatResult
from .tls import explain_tls_error
from .tree import Tree

__all__ = ["COMMANDS", "add_client_commands", "build_parser", "main"]

Handler = Callable[[Tree, argparse.Namespace], Awaitable[int]]
T = TypeVar("T")
A = TypeVar("A")
CONNECT_TIMEOUT = 15.0  # seconds for TCP connect, TLS handshake and Tversion
STAT_WORKERS = 64  # stats in flight at once for ls -l (see _bounded_map)


# --- verbs ------------------------------------------------------------------

async def _ls(tree: Tree, args: argparse.Namespace) -> int:
    paths = args.paths or ["/"]
    for n, path in enumerate(paths):
        info = await tree.stat(path)
        if not info.is_dir():
            _print(await _ls_line(tree, path, info, numeric=args.numeric)
                   if args.long else path)
            continue
        if len(paths) > 1:
            _print(("\n" if n else "") + f"{path}:")
        entries = sorted(await tree.scandir(path), key=lambda e: e.name)
        if not args.long:
            for entry in entries:
                _print(entry.name)
            continue
        async with await tree.subtree(path) as directory:  # walks of one name each
            entry_line = partial(_ls_entry, directory, numeric=args.numeric)
            for line in await _bounded_map(entry_line, entries, STAT_WORKERS):
                if line is not None:
                    _print(line)
    return 0


async def _ls_entry(directory: Tree, entry: DirEntry, *, numeric: bool) -> str | None:
    try:
        info = await directory.stat(entry.name)
    except FileNotFoundError:  # removed since the readdir: ls -l leaves it out too
        return None
    return await _ls_line(directory, entry.name, info, entry.name, numeric=numeric)


async def _bounded_map(func: Callable[[A], Awaitable[T]], items: Sequence[A],
                       limit: int) -> list[T]:
    """``[await func(item) for item in items]`` with at most ``limit`` in flight.

    A gather of 5,000 stats queued 5,000 tasks on the client's request semaphore,
    whose wake-up scans its waiters: quadratic, 4.7 s for ls -l of 5,000 entries.
    """
    results: list[T | None] = [None] * len(items)
    cursor = iter(range(len(items)))

    async def worker() -> None:
        for index in cursor:
            results[index] = await func(items[index])

    await asyncio.gather(*(worker() for _ in range(min(limit, len(items)))))
    return results  # type: ignore[return-value]  # every slot was filled


@cache
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@cache
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


async def _ls_line(tree: Tree, path: str, info: StatResult, name: str | None = None, *,
                   numeric: bool = False) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.st_mtime))
    # owners by name where this system knows the id, like ls -l (the server's ids may
    # name other users here: -n shows the numbers, like ls -n)
    user, group = ((str(info.st_uid), str(info.st_gid)) if numeric
                   else (_user(info.st_uid), _group(info.st_gid)))
    line = (f"{stat_module.filemode(info.st_mode)} {info.st_nlink:>3} {user:<8} "
            f"{group:<8} {info.st_size:>10} {when} {name or path}")
    if info.is_symlink():
        line += f" -> {await tree.readlink(path)}"
    return line


async def _cat(tree: Tree, args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for path in args.paths:
        async with await tree.open(path, "rb") as f:
            while data := await f.read(CHUNK):
                out.write(data)
    out.flush()
    return 0


async def _stat(tree: Tree, args: argparse.Namespace) -> int:
    for path in args.paths:
        s = await tree.stat(path)
        _print(f"  File: {path}")
        _print(f"  Size: {s.st_size:<12} Blocks: {s.st_blocks:<8} IO Block: {s.st_blksize:<6} "
               f"{_kind(s.st_mode)}")
        _print(f"   Qid: type {s.qid.type:#x} version {s.qid.version} path {s.qid.path}"
               f"  Links: {s.st_nlink}")
        _print(f"Access: ({s.st_mode & 0o7777:04o}/{stat_module.filemode(s.st_mode)})  "
               f"Uid: {s.st_uid}  Gid: {s.st_gid}")
        for label, ns in (("Access", s.st_atime_ns), ("Modify", s.st_mtime_ns),
                          ("Change", s.st_ctime_ns)):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns // 1_000_000_000))
            _print(f"{label}: {stamp}.{ns % 1_000_000_000:09d}")
    return 0


def _kind(mode: int) -> str:
    for test, name in ((stat_module.S_ISDIR, "directory"), (stat_module.S_ISREG, "regular file"),
                       (stat_module.S_ISLNK, "symbolic link"), (stat_module.S_ISFIFO, "fifo"),
                       (stat_module.S_ISSOCK, "socket"), (stat_module.S_ISCHR, "character device"),
                       (stat_module.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "unknown"


async def _mkdir(tree: Tree, args: argparse.Namespace) -> int:
    mode = 0o777 & ~local_umask()  # like mkdir(1): the umask applies, not the server's
    for path in args.paths:
        if args.parents:
            await tree.makedirs(path, mode, exist_ok=True)
        else:
            await tree.mkdir(path, mode)
    return 0


async def _rm(tree: Tree, args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:  # like rm(1): report each failure, go on with the rest
        try:
            if args.recursive:
                await tree.rmtree(path)
            else:
                await tree.remove(path)
        except FileNotFoundError:
            if not args.force:
                _error(f"{path}: {os.strerror(errno.ENOENT)}")
                status = 1
        except OSError as exc:
            _error(f"{exc.filename or path}: {exc.strerror}")
            status = 1
    return status


async def _mv(tree: Tree, args: argparse.Namespace) -> int:
    await tree.rename(args.old, args.new)
    return 0


async def _tree(tree: Tree, args: argparse.Namespace) -> int:
    counts = [0, 0]  # directories, files
    _print(args.path)
    await _tree_below(tree, args.path, "", counts)
    _print(f"\n{counts[0]} director{'y' if counts[0] == 1 else 'ies'}, "
           f"{counts[1]} file{'' if counts[1] == 1 else 's'}")
    return 0


async def _tree_below(tree: Tree, path: str, prefix: str, counts: list[int]) -> None:
    entries = sorted(await tree.scandir(path), key=lambda e: e.name)
    for n, entry in enumerate(entries):
        last = n == len(entries) - 1
        label = entry.name
        if entry.is_symlink():
            label += f" -> {await tree.readlink(entry.path)}"
        _print(f"{prefix}{'└── ' if last else '├── '}{label}")
        if entry.is_dir():
            counts[0] += 1
            await _tree_below(tree, entry.path, prefix + ("    " if last else "│   "), counts)
        else:
            counts[1] += 1


def _print(line: str) -> None:
    print(line)  # the CLI is the one place that prints


COMMANDS: dict[str, tuple[str, Handler, Callable[[argparse.ArgumentParser], object]]] = {
    "ls": ("list a directory", _ls, lambda p: (
        p.add_argument("-l", dest="long", action="store_true",
                       help="long listing: mode, links, owner, group, size, mtime"),
        p.add_argument("-n", dest="numeric", action="store_true",
                       help="with -l: numeric owner and group ids, not names"),
        p.add_argument("paths", nargs="*", metavar="PATH",
                       help="directories or files to list (default /)"))),
    "cat": ("print files", _cat, lambda p: p.add_argument(
        "paths", nargs="+", metavar="PATH", help="files to write to stdout, in order")),
    "get": ("copy a remote file (or tree, -r) here", get, add_get_arguments),
    "put": ("copy a local file (or tree, -r) to the server", put, add_put_arguments),
    "stat": ("show attributes", _stat, lambda p: p.add_argument(
        "paths", nargs="+", metavar="PATH", help="files to describe (links not followed)")),
    "mkdir": ("make directories (mode 0777 less the local umask)", _mkdir, lambda p: (
        p.add_argument("-p", dest="parents", action="store_true", help="make parents as needed"),
        p.add_argument("paths", nargs="+", metavar="PATH", help="directories to make"))),
    "rm": ("remove files or directories", _rm, lambda p: (
        p.add_argument("-r", "-R", dest="recursive", action="store_true",
                       help="remove directories and everything below them"),
        p.add_argument("-f", dest="force", action="store_true", help="ignore missing files"),
        p.add_argument("paths", nargs="+", metavar="PATH", help="what to remove"))),
    "mv": ("rename", _mv, lambda p: (
        p.add_argument("old", metavar="OLD", help="existing path"),
        p.add_argument("new", metavar="NEW", help="new path (replaced if it exists)"))),
    "tree": ("show a directory tree", _tree, lambda p: p.add_argument(
        "path", nargs="?", default="/", help="top directory (default /)")),
}


def add_client_commands(subparsers: Any) -> None:
    """Add the client verbs to ``ninep``'s subparsers; each sets ``func(args) -> exit code``."""
    for name, (help_text, handler, configure) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        configure(parser)
        add_connection_options(parser)
        parser.set_defaults(func=_runner(handler, parser), handler=handler)


def _runner(handler: Handler, parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        problem = check_connection_options(args)
        if problem is not None:
            parser.error(problem)
        return run_command(handler, args)
    return run


def run_command(handler: Handler, args: argparse.Namespace) -> int:
    """Connect, attach, run one verb; map errors to messages and exit codes."""
    try:
        return asyncio.run(_session(handler, args))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except TLSError as exc:
        hint = "" if args.cert else " (no client certificate was given: --cert, --tls-key)"
        _error(f"{args.server}: {exc}{hint if 'client certificate' in str(exc) else ''}")
    except ProtocolError as exc:
        _error(f"{args.server}: {exc}")
    except ValueError as exc:  # e.g. a --key file that holds no Ed25519 key
        _error(str(exc))
    except OSError as exc:
        if exc.filename is None:
            _error(f"{args.server}: {exc.strerror or exc}")
        else:
            _error(f"{exc.filename}: {exc.strerror}")
    return 1


async def _session(handler: Handler, args: argparse.Namespace) -> int:
    tls = tls_for(args)
    try:
        client = await asyncio.wait_for(
            Client.connect(args.server, args.msize, tls=tls,
                           server_hostname=args.server_name), CONNECT_TIMEOUT)
    except TimeoutError:
        raise OSError(errno.ETIMEDOUT, "cannot connect: timed out") from None
    except ssl.SSLError as exc:
        raise TLSError(explain_tls_error(exc, args.server_name or _host(args.server))) from None
    except OSError as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise OSError(exc.errno, f"cannot connect: {exc.strerror or exc}") from None
    async with client:
        tree = await client.attach(args.uname, args.aname, args.n_uname, key=args.key)
        return await handler(tree, args)


def _host(server: str) -> str:
    return parse_address(server).host


def _error(message: str) -> None:
    print(f"ninep: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """A standalone ``ninep`` parser holding just the client verbs."""
    parser = argparse.ArgumentParser(prog="ninep", description="9P2000.L client commands")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_client_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m clients.cli``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
