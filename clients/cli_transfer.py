"""``ninep get`` and ``ninep put``: files and (with -r) trees, a progress bar on a terminal."""

from __future__ import annotations

import argparse
import errno
import os
import stat as stat_module
import sys
from dataclasses import dataclass, field
from typing import IO

from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs: used as Any

from .tree import Tree

__all__ = ["CHUNK", "add_get_arguments", "add_put_arguments", "get", "local_umask", "put"]

CHUNK = 1 << 20  # bytes per local read/write when copying
PROGRESS_DELAY = 0.5  # seconds a transfer runs before "auto" draws its bar


def local_umask() -> int:
    """The process umask (Python 3.11 has no os.get_umask: set it and put it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "-R", dest="recursive", action="store_true",
                   help="copy a directory and everything below it")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr when it is a terminal: auto draws it once a "
                        f"transfer takes over {PROGRESS_DELAY:g} s, always from the start, "
                        "never not at all (default auto)")


def add_get_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("-f", dest="force", action="store_true",
                   help="replace local files that exist (refused without -f)")
    p.add_argument("remote", metavar="REMOTE", help="remote file (or directory with -r)")
    p.add_argument("local", nargs="?", metavar="LOCAL",
                   help="local file or directory (default: the remote name, here)")


def add_put_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("local", metavar="LOCAL", help="local file (or directory with -r)")
    p.add_argument("remote", metavar="REMOTE",
                   help="remote file or directory (an existing one is replaced, like cp)")


@dataclass
class _Plan:
    """What a copy will do: directories to make, then files and links, in order."""

    dirs: list[tuple[str, int]] = field(default_factory=list)  # (destination, mode)
    files: list[tuple[str, str, int, int]] = field(default_factory=list)  # src, dst, size, mode
    links: list[tuple[str, str]] = field(default_factory=list)  # (target, destination)

    @property
    def total(self) -> int:
        return sum(f[2] for f in self.files)


def _bar(args: argparse.Namespace, total: int) -> tqdm:
    """A byte counter on stderr, drawn only on a terminal (tqdm's disable=None)."""
    never = args.progress == "never" or not sys.stderr.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                disable=never, delay=PROGRESS_DELAY if args.progress == "auto" else 0,
                file=sys.stderr, dynamic_ncols=True)


def _basename(path: str) -> str:
    return os.path.basename(path.rstrip("/")) or "."


# --- get ----------------------------------------------------------------------

async def get(tree: Tree, args: argparse.Namespace) -> int:
    info = await tree.stat(args.remote)
    local = args.local or "."
    if os.path.isdir(local):  # like cp: into an existing directory
        local = os.path.join(local, _basename(args.remote))
    plan = _Plan()
    if info.is_dir():
        if not args.recursive:
            raise OSError(errno.EISDIR, f"{os.strerror(errno.EISDIR)} (use -r)", args.remote)
        await _plan_get(tree, args.remote, local, plan)
    else:
        plan.files.append((args.remote, local, info.st_size, info.st_mode & 0o777))
    if not args.force:
        for _, dst, _, _ in plan.files:
            if os.path.lexists(dst):
                raise OSError(errno.EEXIST, f"{os.strerror(errno.EEXIST)} (use -f to replace it)",
                              dst)
    for dst, mode in plan.dirs:
        if not os.path.isdir(dst):
            os.mkdir(dst, mode | 0o700)  # os.mkdir honours the umask
    with _bar(args, plan.total) as bar:
        for src, dst, _, mode in plan.files:
            await _get_file(tree, src, dst, mode, args.force, bar)
    for target, dst in plan.links:
        os.symlink(target, dst)
    return 0


async def _plan_get(tree: Tree, remote: str, local: str, plan: _Plan) -> None:
    plan.dirs.append((local, (await tree.stat(remote)).st_mode & 0o777))
    for entry in sorted(await tree.scandir(remote), key=lambda e: e.name):
        dst = os.path.join(local, entry.name)
        info = await tree.stat(entry.path)
        if info.is_dir():
            await _plan_get(tree, entry.path, dst, plan)
        elif info.is_symlink():
            plan.links.append((await tree.readlink(entry.path), dst))
        elif stat_module.S_ISREG(info.st_mode):
            plan.files.append((entry.path, dst, info.st_size, info.st_mode & 0o777))
        else:
            print(f"ninep: {entry.path}: not a regular file, skipped", file=sys.stderr)


async def _get_file(tree: Tree, remote: str, local: str, mode: int, force: bool,
                    bar: tqdm) -> None:
    async with await tree.open(remote, "rb") as f:
        # O_EXCL unless -f: a file that appeared since the check is not replaced either;
        # the mode is the remote one less the umask, as cp makes it.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
        fd = os.open(local, flags, mode)
        with os.fdopen(fd, "wb") as out:
            while data := await f.read(CHUNK):
                out.write(data)
                bar.update(len(data))


# --- put ----------------------------------------------------------------------

async def put(tree: Tree, args: argparse.Namespace) -> int:
    remote = args.remote
    try:
        if (await tree.stat(remote)).is_dir():
            remote = f"{remote.rstrip('/')}/{_basename(args.local)}"
    except FileNotFoundError:
        pass
    umask = local_umask()
    plan = _Plan()
    if os.path.isdir(args.local):
        if not args.recursive:
            raise OSError(errno.EISDIR, f"{os.strerror(errno.EISDIR)} (use -r)", args.local)
        _plan_put(args.local, remote, umask, plan)
    else:
        plan.files.append((args.local, remote, os.path.getsize(args.local),
                           os.stat(args.local).st_mode & 0o777 & ~umask))
    for dst, mode in plan.dirs:
        try:
            await tree.mkdir(dst, mode)
        except FileExistsError:
            if not (await tree.stat(dst)).is_dir():
                raise
    for target, dst in plan.links:
        await tree.symlink(target, dst)
    with _bar(args, plan.total) as bar:
        for src, dst, _, mode in plan.files:
            with open(src, "rb") as source:
                await _put_file(tree, source, dst, mode, bar)
    return 0


def _plan_put(local: str, remote: str, umask: int, plan: _Plan) -> None:
    plan.dirs.append((remote, os.stat(local).st_mode & 0o777 & ~umask))
    with os.scandir(local) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            dst = f"{remote.rstrip('/')}/{entry.name}"
            if entry.is_symlink():
                plan.links.append((os.readlink(entry.path), dst))
            elif entry.is_dir():
                _plan_put(entry.path, dst, umask, plan)
            elif entry.is_file():
                info = entry.stat()
                plan.files.append((entry.path, dst, info.st_size, info.st_mode & 0o777 & ~umask))
            else:
                print(f"ninep: {entry.path}: not a regular file, skipped", file=sys.stderr)


async def _put_file(tree: Tree, source: IO[bytes], remote: str, mode: int,
                    bar: tqdm) -> None:
    async with await tree.open(remote, "wb", mode) as f:
        while data := source.read(CHUNK):
            await f.write(data)
            bar.update(len(data))
