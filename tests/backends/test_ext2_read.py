"""The ext2 backend's read path: trees populated by ``mke2fs -d`` served byte-exact."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ext2util import e2fsck, mkfs, open_image, snapshot

from ninep.backends.registry import BackendConfigError, open_backend


def make_tree(root: Path, far: int) -> Path:
    """Files crossing every indirection level, symlinks, hard links, xattrs, a big directory."""
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "small").write_bytes(b"hello\n")
    (root / "medium").write_bytes(bytes(range(256)) * 1200 + b"tail")  # into double indirect
    with open(root / "sparse", "wb") as f:  # holes, and data out in triple indirect
        f.write(b"head")
        f.seek(far // 2)
        f.write(b"middle" * 1000)
        f.seek(far)
        f.write(b"end")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "x.txt").write_bytes(b"x" * 5000)
    os.chmod(root / "sub" / "deeper" / "x.txt", 0o600)
    (root / "fast").symlink_to("small")
    (root / "slow").symlink_to("/".join(["component"] * 30))
    os.link(root / "small", root / "sub" / "hardlink")
    os.setxattr(root / "small", "user.one", b"1")
    os.setxattr(root / "medium", "user.big", b"v" * 700)
    big = root / "bigdir"
    big.mkdir()
    for i in range(600):
        (big / f"entry-{i:04d}-{'y' * (i % 40)}").write_bytes(str(i).encode())
    return root


def host_snapshot(root: Path, rel: str = "") -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    dtypes = {stat.S_IFREG: 8, stat.S_IFDIR: 4, stat.S_IFLNK: 10}
    for entry in os.scandir(root / rel if rel else root):
        path = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        content: object = None
        if stat.S_ISREG(st.st_mode):
            content = Path(entry.path).read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(entry.path)
        xattrs = () if stat.S_ISLNK(st.st_mode) else tuple(
            (n, os.getxattr(entry.path, n)) for n in sorted(os.listxattr(entry.path)))
        size = None if stat.S_ISDIR(st.st_mode) else st.st_size
        out["/" + path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), size, st.st_nlink,
                           content, xattrs, dtypes[stat.S_IFMT(st.st_mode)])
        if stat.S_ISDIR(st.st_mode):
            out.update(host_snapshot(root, path))
    return out


LAYOUTS = [  # block size, inode size, revision
    (1024, 256, 1), (1024, 128, 1), (2048, 256, 1), (4096, 128, 1), (4096, 256, 1),
    (1024, 128, 0),
]


@pytest.mark.parametrize(("block", "inode", "rev"), LAYOUTS,
                         ids=[f"b{b}-i{i}-r{r}" for b, i, r in LAYOUTS])
async def test_mke2fs_tree_served_exactly(tmp_path: Path, block: int, inode: int,
                                          rev: int) -> None:
    per = block // 4
    # Triple indirection for 1 KiB blocks; double for larger ones (their triple starts at GiBs).
    far = min((12 + per + per * per + 10) * block, 80 << 20)
    seed = make_tree(tmp_path / "seed", far)
    if rev == 0:  # no xattrs nor file types in revision 0
        for path in ("small", "medium"):
            for name in os.listxattr(seed / path):
                os.removexattr(seed / path, name)
    image = mkfs(tmp_path / "fs.img", "24M", block, inode, rev, seed=seed)
    backend = open_image(image, read_only=True)
    try:
        got = await snapshot(backend.root)
    finally:
        await backend.close()
    want = host_snapshot(seed)
    assert sorted(got) == sorted(want)
    for path in want:
        assert got[path] == want[path], path
    assert e2fsck(image)[0] == 0


async def test_hashed_directories_are_read(tmp_path: Path) -> None:
    seed = make_tree(tmp_path / "seed", 1 << 20)
    image = mkfs(tmp_path / "fs.img", "24M", 1024, 256, seed=seed)
    code, out = e2fsck(image, "-fyD")  # builds the htree index of bigdir
    assert code in (0, 1), out
    backend = open_image(image, read_only=True)
    try:
        node = await backend.root.walk("bigdir")
        assert node.inode.flags & 0x1000, "bigdir did not get an htree index"
        got = await snapshot(backend.root)
    finally:
        await backend.close()
    assert got == host_snapshot(seed)


async def test_statfs_from_superblock(tmp_path: Path) -> None:
    from ext2util import dumpe2fs
    image = mkfs(tmp_path / "fs.img", "8M")
    backend = await open_backend("ext2", str(image), {}, True)
    try:
        fsinfo = await backend.root.statfs()
    finally:
        await backend.close()
    header = dumpe2fs(image)
    assert fsinfo.bfree == int(header["Free blocks"])
    assert fsinfo.ffree == int(header["Free inodes"])
    assert fsinfo.blocks == int(header["Block count"]) and fsinfo.bsize == 1024


@pytest.mark.parametrize("kind", ["ext3", "ext4"])
async def test_ext3_and_ext4_served_read_only(tmp_path: Path, kind: str) -> None:
    seed = make_tree(tmp_path / "seed", 80 << 20)
    image = tmp_path / "fs.img"
    mkfs(image, "64M", 4096, 256, seed=seed, extra=("-t", kind))
    backend = await open_backend("ext2", str(image), {}, True)
    try:
        got = await snapshot(backend.root)
    finally:
        await backend.close()
    assert got == host_snapshot(seed)
    if kind == "ext4":
        with pytest.raises(BackendConfigError, match=r"cannot write feature.*extent"):
            await open_backend("ext2", str(image), {}, False)


async def test_not_an_image(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.img"
    bogus.write_bytes(bytes(65536))
    with pytest.raises(BackendConfigError, match="not an ext2 image"):
        await open_backend("ext2", str(bogus), {}, True)
    with pytest.raises(BackendConfigError, match="cannot open"):
        await open_backend("ext2", str(tmp_path / "missing.img"), {}, True)
