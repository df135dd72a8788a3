"""The namespace core: mount trees, walks across mounts, qids, cookies, names, checks."""

from __future__ import annotations

import errno
import stat
from typing import Any

import pytest

from ninep.backends.ram import RamBackend
from ninep.backends.synthetic import NullBackend, NullFile, SyntheticBackend
from ninep.vfs.namespace import Location, Namespace, validate_name
from ninep.vfs.node import Cred, SetAttr

ROOT = Cred(0, 0)
ALICE = Cred(1000, 1000)
BOB = Cred(1001, 1001)


async def walk_path(ns: Namespace, path: str, cred: Cred = ROOT) -> Location:
    loc = ns.root()
    for part in [p for p in path.split("/") if p]:
        loc = await ns.walk(loc, part, cred)
    return loc


async def qid_of(ns: Namespace, path: str) -> Any:
    loc = await walk_path(ns, path)
    return ns.qid(loc, await loc.node.getattr())


async def names(ns: Namespace, loc: Location) -> list[str]:
    return [e.name for e in await ns.readdir(loc, 0, 1000)]


@pytest.mark.asyncio
async def test_synthetic_directories_hold_mounts_at_any_depth() -> None:
    ns = await Namespace.build([("/data/ram", RamBackend(), False),
                                ("/ctl", SyntheticBackend({"null": NullFile()}), False)])
    assert sorted(await names(ns, ns.root())) == [".", "..", "ctl", "data"]
    assert await names(ns, await walk_path(ns, "/data")) == [".", "..", "ram"]
    null = await walk_path(ns, "/ctl/null")
    assert stat.S_ISREG((await null.node.getattr()).mode)
    root_attr = await ns.root().node.getattr()
    assert stat.S_IMODE(root_attr.mode) == 0o555
    with pytest.raises(OSError) as info:
        await ns.mkdir(ns.root(), "x", 0o755, 0, ROOT)
    assert info.value.errno == errno.EROFS


@pytest.mark.asyncio
async def test_dotdot_crosses_mounts_and_stops_at_the_root() -> None:
    ns = await Namespace.build([("/a/b", RamBackend(), False)])
    b = await walk_path(ns, "/a/b")
    a = await ns.walk(b, "..", ROOT)
    assert await names(ns, a) == [".", "..", "b"]
    top = await ns.walk(await ns.walk(a, "..", ROOT), "..", ROOT)
    assert top == ns.root()


@pytest.mark.asyncio
async def test_mount_over_a_directory_of_another_backend() -> None:
    outer, inner = RamBackend(), RamBackend()
    outer.add_file("sub/placeholder", b"hidden")
    inner.add_file("inside", b"visible")
    ns = await Namespace.build([("/", outer, False), ("/sub", inner, True)])
    sub = await walk_path(ns, "/sub")
    assert await names(ns, sub) == [".", "..", "inside"]
    back = await ns.walk(sub, "..", ROOT)
    assert "sub" in await names(ns, back)
    with pytest.raises(OSError) as info:
        await ns.unlink(ns.root(), "sub", True, ROOT)
    assert info.value.errno == errno.EBUSY
    with pytest.raises(OSError) as info:
        await ns.create(sub, "new", 1, 0o644, 0, ROOT)
    assert info.value.errno == errno.EROFS


@pytest.mark.asyncio
async def test_a_backend_that_cannot_change_is_mounted_read_only() -> None:
    frozen = RamBackend(root_mode=0o755)
    frozen.add_file("file", b"x")
    frozen.read_only = True  # as a tar archive is: EROFS comes before EACCES, as on Linux
    ns = await Namespace.build([("/", frozen, False)])
    assert ns.mounts[0].read_only
    for cred in (ROOT, ALICE):
        with pytest.raises(OSError) as info:
            await ns.create(ns.root(), "new", 1, 0o644, 0, cred)
        assert info.value.errno == errno.EROFS


@pytest.mark.asyncio
async def test_a_missing_mount_point_is_made_in_a_writable_backend_only() -> None:
    outer = RamBackend()
    ns = await Namespace.build([("/", outer, False), ("/new/x", RamBackend(), False)])
    assert (await walk_path(ns, "/new/x")).node is ns.mounts[1].backend.root
    with pytest.raises(ValueError, match="does not exist in the read-only backend"):
        await Namespace.build([("/", RamBackend(), True), ("/nope", RamBackend(), False)])


@pytest.mark.asyncio
async def test_qids_are_unique_across_mounts_and_shared_by_hard_links() -> None:
    one, two = RamBackend(), RamBackend()
    one.add_file("f", b"1")
    two.add_file("f", b"2")
    ns = await Namespace.build([("/one", one, False), ("/two", two, False)])
    q1, q2 = await qid_of(ns, "/one/f"), await qid_of(ns, "/two/f")
    assert (await walk_path(ns, "/one/f")).node is not (await walk_path(ns, "/two/f")).node
    assert q1.path != q2.path
    one_dir = await walk_path(ns, "/one")
    await ns.link(one_dir, "g", await walk_path(ns, "/one/f"), ROOT)
    assert (await qid_of(ns, "/one/g")).path == q1.path
    with pytest.raises(OSError) as info:
        await ns.link(one_dir, "h", await walk_path(ns, "/two/f"), ROOT)
    assert info.value.errno == errno.EXDEV


@pytest.mark.asyncio
async def test_readdir_cookies_survive_concurrent_creates_and_unlinks() -> None:
    ram = RamBackend()
    ns = await Namespace.build([("/", ram, False)])
    root = ns.root()
    for i in range(300):
        await ns.create(root, f"f{i:03d}", 1, 0o644, 0, ROOT)
    seen: list[str] = []
    cookie = 0
    created = 0
    while True:
        batch = await ns.readdir(root, cookie, 17)
        if not batch:
            break
        seen += [e.name for e in batch]
        cookie = batch[-1].cookie
        if created == 12:
            continue  # churn stops, so the listing reaches its end
        # churn between batches: delete some not yet listed, add new ones
        await ns.create(root, f"new{created}", 1, 0o644, 0, ROOT)
        created += 1
        victim = f"f{(len(seen) + 40) % 300:03d}"
        if victim not in seen:
            try:
                await ns.unlink(root, victim, False, ROOT)
            except FileNotFoundError:
                pass
    assert len(seen) == len(set(seen)), "an entry was listed twice"
    survivors = {e.name for e in await ns.readdir(root, 0, 10_000)}
    originals = {f"f{i:03d}" for i in range(300)}
    assert originals & survivors <= set(seen), "an entry that existed throughout was skipped"
    assert seen[:2] == [".", ".."]


@pytest.mark.asyncio
async def test_resuming_from_any_earlier_cookie() -> None:
    ram = RamBackend()
    for i in range(20):
        ram.add_file(f"n{i:02d}", b"")
    ns = await Namespace.build([("/", ram, False)])
    full = await ns.readdir(ns.root(), 0, 100)
    for index, entry in enumerate(full):
        rest = await ns.readdir(ns.root(), entry.cookie, 100)
        assert [e.name for e in rest] == [e.name for e in full[index + 1:]]


@pytest.mark.parametrize("name,code", [
    ("", errno.EINVAL), (".", errno.EINVAL), ("..", errno.EINVAL), ("a/b", errno.EINVAL),
    ("nul\0", errno.EINVAL), ("x" * 256, errno.ENAMETOOLONG), ("é" * 128, errno.ENAMETOOLONG),
])
def test_invalid_names(name: str, code: int) -> None:
    with pytest.raises(OSError) as info:
        validate_name(name)
    assert info.value.errno == code


def test_valid_names() -> None:
    for name in ("x" * 255, "with space", "new\nline", "ünïcødé", "...", ".hidden"):
        validate_name(name)


@pytest.mark.asyncio
async def test_read_only_mount_refuses_before_the_backend_is_called() -> None:
    ram = RamBackend()
    ram.add_file("f", b"data")
    calls: list[str] = []
    root = ram.root
    for method in ("create", "mkdir", "symlink", "mknod", "unlink", "rename", "link",
                   "setattr", "xattr_set", "xattr_remove"):
        original = getattr(root, method)

        async def spy(*args: Any, _name: str = method, _orig: Any = original) -> Any:
            calls.append(_name)
            return await _orig(*args)
        setattr(root, method, spy)
    ns = await Namespace.build([("/", ram, True)])
    loc = ns.root()
    f = await ns.walk(loc, "f", ROOT)
    attempts = [
        ns.create(loc, "n", 1, 0o644, 0, ROOT), ns.mkdir(loc, "d", 0o755, 0, ROOT),
        ns.symlink(loc, "s", "t", 0, ROOT), ns.mknod(loc, "p", stat.S_IFIFO | 0o644, 0, 0, ROOT),
        ns.unlink(loc, "f", False, ROOT), ns.rename(loc, "f", loc, "g", ROOT),
        ns.link(loc, "h", f, ROOT), ns.setattr(loc, SetAttr(mode=0o700), ROOT),
        ns.xattr_set(loc, "user.a", b"1", 0, ROOT), ns.xattr_remove(loc, "user.a", ROOT),
        ns.open(f, 1, ROOT), ns.open(f, 0o1000, ROOT),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as info:
            await attempt
        assert info.value.errno == errno.EROFS
    assert calls == []
    handle = await ns.open(f, 0, ROOT)
    assert await handle.read(0, 10) == b"data"


@pytest.mark.asyncio
async def test_permissions_for_the_attaching_uid() -> None:
    ram = RamBackend()
    ns = await Namespace.build([("/", ram, False)])
    root = ns.root()
    with pytest.raises(OSError) as info:
        await ns.create(root, "x", 1, 0o644, 1000, ALICE)  # / is root's 0755
    assert info.value.errno == errno.EACCES
    home = await ns.mkdir(root, "home", 0o755, 0, ROOT)
    await ns.setattr(home, SetAttr(uid=1000, gid=1000), ROOT)
    private, _ = await ns.create(home, "private", 2, 0o600, 1000, ALICE)
    public, _ = await ns.create(home, "public", 2, 0o644, 1000, ALICE)
    with pytest.raises(OSError) as info:
        await ns.open(private, 0, BOB)
    assert info.value.errno == errno.EACCES
    await ns.open(public, 0, BOB)
    with pytest.raises(OSError) as info:
        await ns.open(public, 1, BOB)
    assert info.value.errno == errno.EACCES
    await ns.open(private, 2, ROOT)  # root bypasses
    with pytest.raises(OSError) as info:
        await ns.setattr(public, SetAttr(mode=0o777), BOB)
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        await ns.setattr(public, SetAttr(uid=1001), ALICE)
    assert info.value.errno == errno.EPERM
    await ns.setattr(home, SetAttr(mode=0o700), ALICE)
    with pytest.raises(OSError) as info:
        await ns.walk(home, "public", BOB)  # no search permission on the directory
    assert info.value.errno == errno.EACCES
    await ns.setattr(home, SetAttr(mode=0o000), ALICE)
    assert (await ns.walk(home, "public", ROOT)).node is public.node  # root searches anyway
    for who in (ROOT, ALICE):  # a file is no directory, whoever walks (ENOTDIR before EACCES)
        await ns.setattr(public, SetAttr(mode=0o000), ROOT)
        with pytest.raises(OSError) as info:
            await ns.walk(public, "x", who)
        assert info.value.errno == errno.ENOTDIR


@pytest.mark.asyncio
async def test_truncate_through_an_open_fid_needs_no_write_permission_again() -> None:
    ns = await Namespace.build([("/", RamBackend(root_mode=0o777), False)])
    f, _ = await ns.create(ns.root(), "f", 2, 0o644, 1000, ALICE)
    await ns.setattr(f, SetAttr(mode=0o444), ALICE)
    with pytest.raises(OSError):
        await ns.setattr(f, SetAttr(size=0), ALICE)
    await ns.setattr(f, SetAttr(size=0), ALICE, open_for_write=True)


@pytest.mark.asyncio
async def test_only_root_makes_device_nodes() -> None:
    ns = await Namespace.build([("/", RamBackend(root_mode=0o777), False)])
    with pytest.raises(OSError) as info:
        await ns.mknod(ns.root(), "dev", stat.S_IFCHR | 0o600, 0x0101, 0, ALICE)
    assert info.value.errno == errno.EPERM
    await ns.mknod(ns.root(), "fifo", stat.S_IFIFO | 0o600, 0, 0, ALICE)


async def _errno_of(coro: Any) -> int | None:
    try:
        await coro
    except OSError as exc:
        return exc.errno
    return None


@pytest.mark.asyncio
async def test_an_empty_name_in_a_walk_is_enoent() -> None:
    # a path-based server looks the empty name up and gets ENOENT, as Linux's lookup does
    ns = await Namespace.build([("/", RamBackend(), False), ("/ctl", SyntheticBackend({}), False)])
    for directory in (ns.root(), await walk_path(ns, "/ctl")):
        assert await _errno_of(ns.walk(directory, "", ROOT)) == errno.ENOENT
        assert await _errno_of(ns.walk(directory, "", ALICE)) == errno.ENOENT
    assert (await ns.walk(ns.root(), ".", ROOT)) == ns.root()


@pytest.mark.asyncio
async def test_symlink_targets_are_checked_as_linux_symlink_checks_them() -> None:
    ns = await Namespace.build([("/", RamBackend(), False)])
    root = ns.root()
    assert await _errno_of(ns.symlink(root, "nul", "a\0b", 0, ROOT)) == errno.EINVAL
    assert await _errno_of(ns.symlink(root, "empty", "", 0, ROOT)) == errno.ENOENT
    assert await _errno_of(ns.symlink(root, "long", "x" * 4096, 0, ROOT)) == errno.ENAMETOOLONG
    longest = await ns.symlink(root, "longest", "x" * 4095, 0, ROOT)
    assert await ns.readlink(longest, ROOT) == "x" * 4095
    assert await names(ns, root) == [".", "..", "longest"]


@pytest.mark.asyncio
async def test_times_are_clamped_to_the_backends_range() -> None:
    ram = RamBackend()
    ram.time_range = (-(2**31), 2**31 - 1)  # type: ignore[misc]  # as ext2's 32-bit times
    ns = await Namespace.build([("/", ram, False)])
    f, _ = await ns.create(ns.root(), "f", 2, 0o644, 0, ROOT)
    await ns.setattr(f, SetAttr(atime_ns=-(2**62) * 10**9, mtime_ns=2**62 * 10**9), ROOT)
    attr = await f.node.getattr()
    assert (attr.atime_ns, attr.mtime_ns) == (-(2**31) * 10**9, (2**31 - 1) * 10**9 + 999_999_999)
    await ns.setattr(f, SetAttr(mtime_ns=-1), ROOT)  # just before 1970: a time, not "now"
    assert (await f.node.getattr()).mtime_ns == -1


@pytest.mark.asyncio
async def test_only_the_owner_sets_a_time_before_1970() -> None:
    ns = await Namespace.build([("/", RamBackend(root_mode=0o777), False)])
    f, _ = await ns.create(ns.root(), "f", 2, 0o666, 1000, ALICE)
    for when in (-1, -(10**18)):
        assert await _errno_of(ns.setattr(f, SetAttr(mtime_ns=when), BOB)) == errno.EPERM
    await ns.setattr(f, SetAttr(mtime_ns=-5), ALICE)
    assert (await f.node.getattr()).mtime_ns == -5


@pytest.mark.asyncio
async def test_a_listing_ends_at_the_entries_of_its_start() -> None:
    ram = RamBackend()
    ns = await Namespace.build([("/", ram, False), ("/ctl", SyntheticBackend({}), False)])
    for i in range(5):
        await ns.create(ns.root(), f"f{i}", 2, 0o644, 0, ROOT)
    end = await ns.listing_end(ns.root())
    first = await ns.readdir(ns.root(), 0, 4, end)
    await ns.create(ns.root(), "late", 2, 0o644, 0, ROOT)
    rest = await ns.readdir(ns.root(), first[-1].cookie, 100, end)
    listed = [e.name for e in first + rest]
    assert listed == [".", "..", "ctl", "f0", "f1", "f2", "f3", "f4"]
    assert "late" in await names(ns, ns.root())  # a listing begun afterwards has it


@pytest.mark.asyncio
async def test_only_a_directory_has_a_listing_end() -> None:
    ns = await Namespace.build([("/", RamBackend(), False), ("/null", NullBackend(), False)])
    f, _ = await ns.create(ns.root(), "f", 2, 0o644, 0, ROOT)
    for loc in (f, await walk_path(ns, "/null")):
        assert await _errno_of(ns.listing_end(loc)) == errno.ENOTDIR


@pytest.mark.asyncio
async def test_readlink_of_a_target_no_linux_symlink_holds_is_enametoolong() -> None:
    """A backend may hand out a target longer than symlink(2) stores (a configured
    symlink mount, a tar archive, a damaged image): ENAMETOOLONG, never a reply the
    wire cannot carry."""
    from ninep.backends.synthetic import SymlinkBackend

    ns = await Namespace.build([("/", RamBackend(), False),
                                ("/longest", SymlinkBackend("t" * 4095), False),
                                ("/long", SymlinkBackend("t" * 4096), False),
                                ("/huge", SymlinkBackend("é" * 40000), False)])
    assert len(await ns.readlink(await walk_path(ns, "/longest"), ROOT)) == 4095
    for path in ("/long", "/huge"):
        with pytest.raises(OSError) as info:
            await ns.readlink(await walk_path(ns, path), ROOT)
        assert info.value.errno == errno.ENAMETOOLONG


@pytest.mark.asyncio
async def test_a_directory_operand_that_is_a_file_is_enotdir_before_erofs_or_eacces() -> None:
    """Linux's lookup fails on "file/name" before it looks at the mount or the
    permissions; so does every directory operand here, on every backend."""
    ram = RamBackend()
    ns = await Namespace.build([("/", ram, False)])
    loc, handle = await ns.create(ns.root(), "f", 2, 0o600, 0, ROOT)
    await handle.close()
    read_only = ns.view(read_only=True)
    for view, cred in ((ns, BOB), (read_only, ROOT), (read_only, BOB)):
        calls = [view.mkdir(loc, "d", 0o755, 0, cred), view.create(loc, "c", 2, 0o644, 0, cred),
                 view.symlink(loc, "s", "t", 0, cred), view.mknod(loc, "n", 0o644, 0, 0, cred),
                 view.link(loc, "h", loc, cred), view.unlink(loc, "x", False, cred),
                 view.rename(ns.root(), "f", loc, "x", cred), view.walk(loc, "x", cred),
                 view.walk(loc, "..", cred)]
        for call in calls:
            with pytest.raises(OSError) as info:
                await call
            assert info.value.errno == errno.ENOTDIR, call
