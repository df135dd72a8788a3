"""The client verbs of the ``ninep`` command: ls, cat, get, put, stat, mkdir, rm, mv, tree."""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import os
import stat as stat_module
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ninep.messages import NONUNAME

from .client import DEFAULT_MSIZE, Client, parse_server_url
from .errors import ProtocolError
from .results import StatResult
from .tree import Tree

__all__ = ["COMMANDS", "add_client_commands", "build_parser", "main"]

Handler = Callable[[Tree, argparse.Namespace], Awaitable[int]]
CHUNK = 1 << 20  # bytes per local read/write when copying
CONNECT_TIMEOUT = 15.0  # seconds for TCP connect plus Tversion


def _default_uname() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("NINEP_SERVER"),
                        help="tcp://HOST:PORT or unix:///path (default: $NINEP_SERVER)")
    parser.add_argument("--aname", default="", help="attach name (which tree to attach)")
    parser.add_argument("--uname", default=_default_uname(), help="user name sent in Tattach")
    parser.add_argument("--uid", type=int, default=NONUNAME, dest="n_uname",
                        help="numeric user id sent in Tattach (n_uname)")
    parser.add_argument("--msize", type=int, default=DEFAULT_MSIZE, help="largest message size")
    parser.add_argument("--key", default=os.environ.get("NINEP_KEY"), metavar="FILE",
                        help="Ed25519 private key proved through Tauth (or set NINEP_KEY)")


# --- verbs ------------------------------------------------------------------

async def _ls(tree: Tree, args: argparse.Namespace) -> int:
    paths = args.paths or ["/"]
    for n, path in enumerate(paths):
        info = await tree.stat(path)
        if not info.is_dir():
            _print(await _ls_line(tree, path, info) if args.long else path)
            continue
        if len(paths) > 1:
            _print(("\n" if n else "") + f"{path}:")
        entries = sorted(await tree.scandir(path), key=lambda e: e.name)
        if not args.long:
            for entry in entries:
                _print(entry.name)
            continue
        stats = await asyncio.gather(*(tree.stat(e.path) for e in entries))
        lines = await asyncio.gather(*(_ls_line(tree, e.path, s, e.name)
                                       for e, s in zip(entries, stats, strict=True)))
        for line in lines:
            _print(line)
    return 0


async def _ls_line(tree: Tree, path: str, info: StatResult, name: str | None = None) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.st_mtime))
    line = (f"{stat_module.filemode(info.st_mode)} {info.st_nlink:>3} {info.st_uid:>5} "
            f"{info.st_gid:>5} {info.st_size:>10} {when} {name or path}")
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


async def _get(tree: Tree, args: argparse.Namespace) -> int:
    local = args.local or os.path.basename(args.remote.rstrip("/")) or "."
    if os.path.isdir(local):
        local = os.path.join(local, os.path.basename(args.remote.rstrip("/")))
    async with await tree.open(args.remote, "rb") as f:
        with open(local, "wb") as out:
            while data := await f.read(CHUNK):
                out.write(data)
    return 0


async def _put(tree: Tree, args: argparse.Namespace) -> int:
    remote = args.remote
    try:
        if (await tree.stat(remote)).is_dir():
            remote = f"{remote.rstrip('/')}/{os.path.basename(args.local)}"
    except FileNotFoundError:
        pass
    with open(args.local, "rb") as src:
        mode = os.fstat(src.fileno()).st_mode & 0o777
        async with await tree.open(remote, "wb", mode) as f:
            while data := src.read(CHUNK):
                await f.write(data)
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
    for path in args.paths:
        if args.parents:
            await tree.makedirs(path, exist_ok=True)
        else:
            await tree.mkdir(path)
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
        p.add_argument("-l", dest="long", action="store_true", help="long listing"),
        p.add_argument("paths", nargs="*", metavar="PATH"))),
    "cat": ("print files", _cat, lambda p: p.add_argument("paths", nargs="+", metavar="PATH")),
    "get": ("copy a remote file here", _get, lambda p: (
        p.add_argument("remote", metavar="REMOTE"),
        p.add_argument("local", nargs="?", metavar="LOCAL"))),
    "put": ("copy a local file to the server", _put, lambda p: (
        p.add_argument("local", metavar="LOCAL"), p.add_argument("remote", metavar="REMOTE"))),
    "stat": ("show attributes", _stat, lambda p: p.add_argument("paths", nargs="+",
                                                                   metavar="PATH")),
    "mkdir": ("make directories", _mkdir, lambda p: (
        p.add_argument("-p", dest="parents", action="store_true", help="make parents as needed"),
        p.add_argument("paths", nargs="+", metavar="PATH"))),
    "rm": ("remove files or directories", _rm, lambda p: (
        p.add_argument("-r", "-R", dest="recursive", action="store_true", help="recursively"),
        p.add_argument("-f", dest="force", action="store_true", help="ignore missing files"),
        p.add_argument("paths", nargs="+", metavar="PATH"))),
    "mv": ("rename", _mv, lambda p: (p.add_argument("old", metavar="OLD"),
                                     p.add_argument("new", metavar="NEW"))),
    "tree": ("show a directory tree", _tree, lambda p: p.add_argument("path", nargs="?",
                                                                       default="/")),
}


def add_client_commands(subparsers: Any) -> None:
    """Add the client verbs to ``ninep``'s subparsers; each sets ``func(args) -> exit code``."""
    for name, (help_text, handler, configure) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        _common(parser)
        configure(parser)
        parser.set_defaults(func=_runner(handler, parser), handler=handler)


def _runner(handler: Handler, parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if not args.server:
            parser.error("--server is required (or set NINEP_SERVER)")
        try:
            parse_server_url(args.server)
        except ValueError as exc:
            parser.error(str(exc))
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
    try:
        client = await asyncio.wait_for(Client.connect(args.server, args.msize),
                                        CONNECT_TIMEOUT)
    except TimeoutError:
        raise OSError(errno.ETIMEDOUT, "cannot connect: timed out") from None
    except OSError as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise OSError(exc.errno, f"cannot connect: {exc.strerror or exc}") from None
    async with client:
        tree = await client.attach(args.uname, args.aname, args.n_uname, key=args.key)
        return await handler(tree, args)


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
