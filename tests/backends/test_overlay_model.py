"""The overlay against a model: a RAM disk seeded with the same tree must see the same changes.

Random sequences of client operations go to both; every answer (result or
errno) and the whole visible tree must agree after each step. The one
licensed difference is overlayfs's: renaming a directory that has a lower
part answers EXDEV (then the model skips that step too).
"""

from __future__ import annotations

import errno
import random
import stat
from pathlib import Path

import pytest
from test_overlay import list_all, read_all, snapshot

from ninep.backends.overlay import OverlayBackend
from ninep.backends.ram import RamBackend
from ninep.backends.registry import KINDS, open_backend
from ninep.vfs.node import Backend, Node, OpenFlags, SetAttr

ASYNC = pytest.mark.asyncio
O_RDWR = 2
NAMES = ["a", "b", "c", "d"]


def seed(fs: RamBackend) -> None:
    for path in ["a", "b/a", "b/c/d", "c/a", "c/b", "d/a/b"]:
        fs.add_file(path, f"<{path}>".encode())


async def visible(node: Node, path: str = "",
                  inos: dict[int, set[str]] | None = None) -> dict[str, object]:
    """Names, types, modes, owners and contents of a whole tree, and which names share
    an inode number (hard links must, nothing else may)."""
    top = inos is None
    inos = {} if inos is None else inos
    out: dict[str, object] = {}
    for entry in await list_all(node):
        child = await node.walk(entry.name)
        attr = await child.getattr()
        here = f"{path}/{entry.name}"
        size = 0 if stat.S_ISDIR(attr.mode) else attr.size  # a host directory's differs
        out[here] = (stat.S_IFMT(attr.mode), stat.S_IMODE(attr.mode), attr.uid, size)
        inos.setdefault(attr.ino, set()).add(here)
        if stat.S_ISDIR(attr.mode):
            out.update(await visible(child, here, inos))
        elif stat.S_ISREG(attr.mode):
            out[here + "#"] = await read_all(child)
        elif stat.S_ISLNK(attr.mode):
            out[here + "@"] = await child.readlink()
    if top:
        out["inode groups"] = sorted(sorted(group) for group in inos.values())
    return out


async def resolve(root: Node, parts: list[str]) -> Node:
    node = root
    for part in parts:
        node = await node.walk(part)
    return node


async def apply(root: Node, op: tuple[object, ...]) -> object:
    """One client operation; returns what it answered (a value or an errno)."""
    kind, where, name, extra = op
    assert isinstance(where, list) and isinstance(name, str)
    try:
        directory = await resolve(root, where)
        if kind == "create":
            _, handle = await directory.create(name, OpenFlags(O_RDWR), 0o644, 0, 0)
            await handle.write(0, f"new {extra}".encode())
            await handle.close()
        elif kind == "write":
            handle = await (await directory.walk(name)).open(OpenFlags(O_RDWR))
            await handle.write(int(str(extra)) % 4, b"W")
            await handle.close()
        elif kind == "truncate":
            await (await directory.walk(name)).setattr(SetAttr(size=int(str(extra)) % 3))
        elif kind == "chmod":
            node = await directory.walk(name)
            if stat.S_ISLNK((await node.getattr()).mode):
                return "symlink"  # Linux has no lchmod (a host directory refuses it)
            await node.setattr(SetAttr(mode=0o600 + int(str(extra)) % 8))
        elif kind == "chown":
            await (await directory.walk(name)).setattr(SetAttr(uid=int(str(extra)) % 5))
        elif kind in ("unlink", "rmdir"):
            await directory.unlink(name, kind == "rmdir")
        elif kind == "mkdir":
            await directory.mkdir(name, 0o755, 0, 0)
        elif kind == "symlink":
            await directory.symlink(name, f"target-{extra}", 0, 0)
        elif kind == "link":
            assert isinstance(extra, list)
            await directory.link(name, await resolve(root, extra))
        elif kind == "rename":
            assert isinstance(extra, list)
            newdir = await resolve(root, extra[:-1])
            await directory.rename(name, newdir, extra[-1])
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, exc.errno)


def random_op(rng: random.Random, tree: dict[str, object]) -> tuple[object, ...]:
    """An operation, mostly on names that exist (else most would just answer ENOENT)."""
    paths = [k.split("/")[1:] for k in tree if k.startswith("/") and k[-1] not in "#@"]
    dirs = [p for p in paths if tree["/" + "/".join(p)][0] == stat.S_IFDIR]  # type: ignore[index]

    def existing() -> list[str]:
        return list(rng.choice(paths)) if paths and rng.random() < 0.8 else [
            rng.choice(NAMES) for _ in range(rng.randrange(1, 4))]

    def new_place() -> list[str]:
        where = list(rng.choice(dirs)) if dirs and rng.random() < 0.7 else []
        return [*where, rng.choice(NAMES)]

    kind = rng.choice(["create", "write", "truncate", "chmod", "chown", "unlink", "rmdir",
                       "mkdir", "symlink", "link", "rename", "rename"])
    target = new_place() if kind in ("create", "mkdir", "symlink") else existing()
    extra: object = rng.randrange(100)
    if kind in ("link", "rename"):
        extra = new_place()
        if kind == "link":
            target, extra = extra, target
    return kind, target[:-1], target[-1], extra


async def make_upper(kind: str, scratch: Path) -> Backend:
    if kind == "ram":
        return RamBackend()
    try:
        KINDS[kind].load()
    except ImportError:
        pytest.skip(f"backends.{kind} is not available")
    (scratch / "upper").mkdir()
    return await open_backend(kind, str(scratch / "upper"))


@pytest.mark.parametrize(("upper_kind", "seed_value"),
                         [("ram", n) for n in range(12)] + [("passthrough", n) for n in range(3)])
@ASYNC
async def test_overlay_behaves_like_a_plain_file_system(upper_kind: str, seed_value: int,
                                                        tmp_path: Path) -> None:
    lower, model = RamBackend(), RamBackend()
    seed(lower)
    seed(model)
    before = await snapshot(lower.root)
    fs = OverlayBackend(lower, await make_upper(upper_kind, tmp_path))
    await fs.start()
    rng = random.Random(seed_value)
    steps = []
    tree = await visible(model.root)
    for _ in range(120):
        op = random_op(rng, tree)
        steps.append(op)
        got = await apply(fs.root, op)
        if got == "EXDEV" and op[0] == "rename":
            continue  # overlayfs without redirect_dir: a lower directory does not move
        want = await apply(model.root, op)
        assert got == want, steps
        tree = await visible(model.root)
        assert await visible(fs.root) == tree, steps
    await fs.close()
    assert await snapshot(lower.root) == before
