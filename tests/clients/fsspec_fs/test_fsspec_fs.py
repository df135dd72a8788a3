"""NinepFileSystem against a real `ninep serve` process: URLs, listings, ranged I/O, moves."""

from __future__ import annotations

import datetime
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

fsspec = pytest.importorskip("fsspec")

from fsspec.callbacks import Callback  # type: ignore[import-untyped]  # noqa: E402

from ninep.clients import SyncClient  # noqa: E402
from ninep.clients.fsspec_fs import NinepFileSystem  # noqa: E402
from tests.clients.fsspec_fs.conftest import ROOT_IDENTITY  # noqa: E402
from tests.conftest import free_port, wait_for_port  # noqa: E402
from tests.hostile.serverproc import ServerProcess, serve_process  # noqa: E402
from tests.integration.policy_helpers import make_pki  # noqa: E402

SMALL_MSIZE = 8192  # every transfer below crosses many Treads and Twrites


def _data(size: int, seed: int = 9) -> bytes:
    return random.Random(seed).randbytes(size)


# --- URLs and the registry ----------------------------------------------------

def test_the_9p_protocol_is_registered_through_the_entry_point() -> None:
    assert fsspec.get_filesystem_class("9p") is NinepFileSystem
    assert fsspec.get_filesystem_class("ninep") is NinepFileSystem


def test_urls_name_host_port_and_user() -> None:
    assert NinepFileSystem._get_kwargs_from_urls("9p://alice@files.example:5641/a/b") == {
        "host": "files.example", "port": 5641, "uname": "alice"}
    assert NinepFileSystem._get_kwargs_from_urls("ninep://files.example/a") == {
        "host": "files.example"}
    strip = NinepFileSystem._strip_protocol
    assert strip("9p://h:1/a//b/") == strip("a/b") == strip("9p::/a/./b") == "/a/b"
    assert strip("9p://h:1") == strip("ninep://h:1/") == strip("") == "/"


def test_fsspec_open_reads_and_writes_a_9p_url(ram_server: ServerProcess) -> None:
    url = f"9p://127.0.0.1:{ram_server.port}/urls/hello.txt"
    with fsspec.open(url, "wt", **ROOT_IDENTITY) as f:
        f.write("hello over 9p\n")
    with fsspec.open(url, "rt", **ROOT_IDENTITY) as f:
        assert f.read() == "hello over 9p\n"
    fs, path = fsspec.core.url_to_fs(url, **ROOT_IDENTITY)
    assert isinstance(fs, NinepFileSystem) and path == "/urls/hello.txt"
    fs.rm("/urls", recursive=True)


def test_a_pickled_filesystem_connects_again(ninep_fs: NinepFileSystem, scratch: str) -> None:
    ninep_fs.pipe(f"{scratch}/f", b"kept")
    clone = pickle.loads(pickle.dumps(ninep_fs))  # what dask sends to its workers
    assert clone.cat(f"{scratch}/f") == b"kept"
    ninep_fs.close()  # and a closed one reconnects on the next call
    assert ninep_fs.cat(f"{scratch}/f") == b"kept"


# --- listings and details -----------------------------------------------------

def test_ls_and_info_follow_fsspec_conventions(ninep_fs: NinepFileSystem, scratch: str) -> None:
    ninep_fs.pipe(f"{scratch}/f", b"12345")
    ninep_fs.mkdir(f"{scratch}/d")
    listing = {e["name"]: e for e in ninep_fs.ls(scratch)}
    assert set(listing) == {f"{scratch}/f", f"{scratch}/d"}
    assert listing[f"{scratch}/f"]["type"] == "file" and listing[f"{scratch}/f"]["size"] == 5
    assert listing[f"{scratch}/d"]["type"] == "directory"
    assert ninep_fs.ls(f"{scratch}/f", detail=False) == [f"{scratch}/f"]
    assert ninep_fs.info(f"9p://127.0.0.1:1{scratch}/f") == listing[f"{scratch}/f"]
    with pytest.raises(FileNotFoundError):
        ninep_fs.info(f"{scratch}/missing")
    assert ninep_fs.isdir(f"{scratch}/d") and ninep_fs.isfile(f"{scratch}/f")


def test_a_listing_larger_than_one_readdir(ram_server: ServerProcess, scratch: str) -> None:
    fs = NinepFileSystem(port=ram_server.port, msize=SMALL_MSIZE, skip_instance_cache=True,
                         **ROOT_IDENTITY)
    names = [f"{scratch}/entry-{i:04d}-{'x' * 40}" for i in range(300)]
    fs.pipe({name: b"" for name in names})
    assert sorted(fs.ls(scratch, detail=False)) == names
    assert all(e["size"] == 0 for e in fs.ls(scratch))
    fs.close()


def test_symlinks_are_described_by_their_target(ninep_fs: NinepFileSystem, scratch: str,
                                                ram_server: ServerProcess) -> None:
    ninep_fs.pipe(f"{scratch}/target", b"abc")
    with SyncClient(f"tcp://127.0.0.1:{ram_server.port}", **ROOT_IDENTITY) as client:
        client.symlink("target", f"{scratch}/link")
        client.symlink("nowhere", f"{scratch}/dangling")
    link = ninep_fs.info(f"{scratch}/link")
    assert (link["type"], link["size"], link["islink"]) == ("file", 3, True)
    assert link["destination"] == f"{scratch}/target"
    assert ninep_fs.cat(f"{scratch}/link") == b"abc"
    assert ninep_fs.info(f"{scratch}/dangling")["type"] == "other"


def test_modified_and_created_are_aware_datetimes(ninep_fs: NinepFileSystem, scratch: str,
                                                  ram_server: ServerProcess) -> None:
    ninep_fs.touch(f"{scratch}/f")
    with SyncClient(f"tcp://127.0.0.1:{ram_server.port}", **ROOT_IDENTITY) as client:
        client.utime(f"{scratch}/f", (1_000_000_000, 1_234_567_890))
    assert ninep_fs.modified(f"{scratch}/f") == datetime.datetime(
        2009, 2, 13, 23, 31, 30, tzinfo=datetime.UTC)
    assert ninep_fs.created(f"{scratch}/f").tzinfo is datetime.UTC


# --- ranged reads and buffered writes -------------------------------------------

def test_ranged_reads_cross_many_treads(ram_server: ServerProcess, scratch: str) -> None:
    fs = NinepFileSystem(port=ram_server.port, msize=SMALL_MSIZE, skip_instance_cache=True,
                         **ROOT_IDENTITY)
    data = _data(300_000)
    fs.pipe(f"{scratch}/big", data)
    for start, end in [(0, None), (5, 70_001), (-1000, None), (100, -100), (299_999, None)]:
        assert fs.cat_file(f"{scratch}/big", start, end) == data[start:end]
    with fs.open(f"{scratch}/big", "rb", block_size=10_000) as f:
        assert f.size == len(data)
        f.seek(123_456)
        assert f.read(50_000) == data[123_456:173_456]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
    assert fs.read_block(f"{scratch}/big", 1000, 2000) == data[1000:3000]
    fs.close()


def test_buffered_writes_in_every_mode(ninep_fs: NinepFileSystem, scratch: str) -> None:
    data = _data(100_000)
    with ninep_fs.open(f"{scratch}/w", "wb", block_size=4096) as f:
        for i in range(0, len(data), 1000):  # many flushes of one block each
            f.write(data[i:i + 1000])
    assert ninep_fs.cat(f"{scratch}/w") == data
    with ninep_fs.open(f"{scratch}/w", "ab") as f:
        f.write(b"tail")
    assert ninep_fs.cat(f"{scratch}/w") == data + b"tail"
    with ninep_fs.open(f"{scratch}/w", "wb") as f:
        f.write(b"short")
    assert ninep_fs.cat(f"{scratch}/w") == b"short"
    with pytest.raises(FileExistsError):
        ninep_fs.open(f"{scratch}/w", "xb")
    with pytest.raises(FileNotFoundError):
        ninep_fs.open(f"{scratch}/missing", "rb")
    with pytest.raises(IsADirectoryError):
        ninep_fs.open(scratch, "rb")
    ninep_fs.pipe(f"{scratch}/new/deeper/f", b"parents made")  # as LocalFileSystem(auto_mkdir)
    assert ninep_fs.cat(f"{scratch}/new/deeper/f") == b"parents made"


def test_a_transaction_renames_into_place_or_leaves_nothing(ninep_fs: NinepFileSystem,
                                                            scratch: str) -> None:
    with ninep_fs.transaction:
        with ninep_fs.open(f"{scratch}/committed", "wb") as f:
            f.write(b"all or nothing")
        assert not ninep_fs.exists(f"{scratch}/committed")
    assert ninep_fs.cat(f"{scratch}/committed") == b"all or nothing"
    with pytest.raises(RuntimeError), ninep_fs.transaction:
        with ninep_fs.open(f"{scratch}/discarded", "wb") as f:
            f.write(b"never seen")
        raise RuntimeError("abandon")
    assert ninep_fs.ls(scratch, detail=False) == [f"{scratch}/committed"]


# --- moves, copies, transfers ---------------------------------------------------

def test_mv_renames_a_directory_in_one_step(ninep_fs: NinepFileSystem, scratch: str) -> None:
    ninep_fs.pipe({f"{scratch}/a/x": b"1", f"{scratch}/a/sub/y": b"2"})
    before = ninep_fs.info(f"{scratch}/a/sub/y")["ino"]
    ninep_fs.mv(f"{scratch}/a", f"{scratch}/b")
    assert ninep_fs.info(f"{scratch}/b/sub/y")["ino"] == before  # renamed, not copied
    ninep_fs.mkdir(f"{scratch}/into")
    ninep_fs.mv(f"{scratch}/b", f"{scratch}/into")  # an existing directory: moved inside
    assert ninep_fs.find(scratch) == [f"{scratch}/into/b/sub/y", f"{scratch}/into/b/x"]
    ninep_fs.mv(f"{scratch}/into/b/x*", f"{scratch}/")  # a glob: copy and remove
    assert ninep_fs.cat(f"{scratch}/x") == b"1"
    assert not ninep_fs.exists(f"{scratch}/into/b/x")


def test_put_and_get_a_tree_with_progress(ninep_fs: NinepFileSystem, scratch: str,
                                          tmp_path: Path) -> None:
    local = tmp_path / "up"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "big").write_bytes(_data(5_000_000))  # more than one copy chunk
    (local / "small").write_bytes(b"s")

    class Counted(Callback):  # type: ignore[misc]  # fsspec is untyped
        moved = 0

        def call(self, *args: object, **kwargs: object) -> None:
            Counted.moved = max(Counted.moved, self.value)

    ninep_fs.put(str(local), f"{scratch}/up", recursive=True, callback=Counted())
    assert ninep_fs.du(f"{scratch}/up") == 5_000_001
    down = tmp_path / "down"
    ninep_fs.get(f"{scratch}/up", str(down), recursive=True)
    assert (down / "sub" / "big").read_bytes() == (local / "sub" / "big").read_bytes()
    assert (down / "small").read_bytes() == b"s"
    ninep_fs.cp(f"{scratch}/up", f"{scratch}/copy", recursive=True)
    assert ninep_fs.cat(f"{scratch}/copy/sub/big") == (local / "sub" / "big").read_bytes()
    ninep_fs.rm(f"{scratch}/up", recursive=True)
    assert ninep_fs.ls(scratch, detail=False) == [f"{scratch}/copy"]


# --- TLS ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """`ninep serve --config` with one TLS listener (a test CA's certificate), RAM root."""
    where = tmp_path_factory.mktemp("fsspec-tls")
    pki = make_pki(where)
    port = free_port()
    config = where / "ninep.toml"
    config.write_text(f"""
[[listen]]
kind = "tls"
address = "127.0.0.1:{port}"
cert = "{pki.server_cert}"
key = "{pki.server_key}"

[namespaces.ram]
mounts = [{{ path = "/", backend = "ram" }}]

[[policy]]
name = "anyone over TLS"
namespace = "ram"
match = {{ transport = "tls" }}
""")
    with (where / "server.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 30)
        yield port, pki.ca
    finally:
        proc.terminate()
        proc.wait(20)


def test_tls_with_the_servers_ca(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    fs = NinepFileSystem(port=port, tls_ca=str(ca), skip_instance_cache=True, **ROOT_IDENTITY)
    fs.pipe("/secret", b"over TLS")
    assert fs.cat("/secret") == b"over TLS"
    fs.close()
    untrusting = NinepFileSystem(port=port, tls=True, skip_instance_cache=True, **ROOT_IDENTITY)
    with pytest.raises(OSError, match=r"(?i)certificate"):  # the system CAs do not know it
        untrusting.ls("/")


def test_a_key_proved_through_tauth(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    alice = Ed25519PrivateKey.generate()
    public = alice.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
    (tmp_path / "authorized_keys").write_text(f"{public} alice@test\n")
    config = tmp_path / "ninep.toml"
    config.write_text(f"""
[auth]
authorized_keys = "{tmp_path / 'authorized_keys'}"

[namespaces.alice]
mounts = [{{ path = "/", backend = "ram", options = {{ mode = "1777" }} }}]

[[policy]]
name = "alice's key"
namespace = "alice"
match = {{ key = "alice@test" }}
""")
    with serve_process(["--config", str(config)], tmp_path) as server:
        fs = NinepFileSystem(port=server.port, uname="alice", n_uname=1000, key=alice,
                             skip_instance_cache=True)
        fs.pipe("/proved", b"by key")
        assert fs.cat("/proved") == b"by key"
        fs.close()
        keyless = NinepFileSystem(port=server.port, uname="alice", n_uname=1000,
                                  skip_instance_cache=True)
        with pytest.raises(PermissionError):
            keyless.ls("/")


# --- pandas ---------------------------------------------------------------------

def test_pandas_reads_and_writes_csv_through_9p(ram_server: ServerProcess, scratch: str) -> None:
    pd = pytest.importorskip("pandas")
    # pandas hands fsspec only URLs whose scheme starts with a letter: not "9p://"
    url = f"ninep://127.0.0.1:{ram_server.port}{scratch}/frame.csv"
    frame = pd.DataFrame({"n": range(1000), "square": [i * i for i in range(1000)]})
    frame.to_csv(url, index=False, storage_options=ROOT_IDENTITY)
    back = pd.read_csv(url, storage_options=ROOT_IDENTITY)
    pd.testing.assert_frame_equal(back, frame)
