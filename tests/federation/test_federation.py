"""Three hosts, one tree: a front server imports two back servers (9p backend).

alpha (10.99.0.1) serves a host directory (passthrough), beta (10.99.0.2) an ext2
image, and front (10.99.0.3) gives every TCP client the namespace /alpha + /beta
built from both (config file, ``backend = "9p"``), plus /gamma, an ext2 image
stored on alpha (``@/alpha/images/gamma.img``). The client (10.99.0.4) uses
ninep.clients against the front, and directly against a back server where a
check needs a second party (locks). Each host is a network namespace where
they can be made, else a loopback address (hosts.py; the module's first test
prints which, shown with ``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ninep.clients import LOCK_UNLCK, LOCK_WRLCK, Client, Tree

from .hosts import ClientThread, Network, ServerProc, network

ALPHA_SEED = b"alpha: a host directory on 10.99.0.1\n"
BETA_SEED = b"beta: an ext2 image on 10.99.0.2\n"
GAMMA_SEED = b"gamma: an ext2 image stored on alpha, served by the front\n"
FRONT_CONFIG = """\
[[listen]]
kind = "tcp"
address = "{front}"

# The front imports each back server once, as root there (uid 0): the back servers
# trust the front host, and the front's own policy decides who its clients are.
[namespaces.federated]
mounts = [
  {{ path = "/alpha", backend = "9p", source = "{alpha}", options = {{ uname = "root", uid = 0 }} }},
  {{ path = "/beta", backend = "9p", source = "{beta}", options = {{ uname = "root", uid = 0 }} }},
  # an image kept on alpha, served by the front as a file system of its own
  {{ path = "/gamma", backend = "ext2", source = "@/alpha/images/gamma.img", read_only = true }},
]

[[policy]]
name = "the federation's clients"
namespace = "federated"
match = {{ transport = "tcp" }}
"""


@dataclass
class Federation:
    """The running hosts, their servers, the client's thread and its trees."""

    net: Network
    alpha: ServerProc
    beta: ServerProc
    front: ServerProc
    export: Path  # alpha's host directory
    image: Path  # beta's ext2 image
    client: ClientThread
    tree: Tree  # the client's attach to the front

    def attach(self, server: ServerProc, proc_id: int) -> Tree:
        """A new connection of the client host to ``server``, attached as root."""
        return _attach(self.client, server, proc_id)

    def logs(self) -> str:
        return "\n".join(f"--- {s.host.name} ({s.url}) ---\n{s.log_text()[-3000:]}"
                         for s in (self.alpha, self.beta, self.front))


def _attach(client: ClientThread, server: ServerProc, proc_id: int) -> Tree:
    """A connection of the client host to ``server``, attached as root; its lock owner
    is ``proc_id`` (the client's trees differ in it, as two processes would)."""
    async def go() -> Tree:
        connection = await Client.connect(server.url)
        return await connection.attach("root", n_uname=0, proc_id=proc_id)
    return client.call(go())


def _mke2fs(image: Path, seed: Path | None = None) -> None:
    mke2fs = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
    contents = ["-d", str(seed)] if seed is not None else []
    subprocess.run([mke2fs, "-q", "-F", "-t", "ext2", "-b", "4096", *contents, str(image),
                    "64M" if seed is None else "8M"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("federation")
    export = work / "alpha-export"
    export.mkdir()
    (export / "hello.txt").write_bytes(ALPHA_SEED)
    (export / "images").mkdir()
    seed = work / "gamma-seed"
    seed.mkdir()
    (seed / "os-release").write_bytes(GAMMA_SEED)
    _mke2fs(export / "images" / "gamma.img", seed)
    image = work / "beta.img"
    _mke2fs(image)
    servers: list[ServerProc] = []
    client: ClientThread | None = None
    with network(("alpha", "beta", "front", "client")) as net:
        try:
            alpha = ServerProc(net["alpha"], net.port(net["alpha"]),
                               ["--mount", f"/=passthrough:{export}"], work)
            beta = ServerProc(net["beta"], net.port(net["beta"]),
                              ["--mount", f"/=ext2:{image}"], work)
            front_host = net["front"]
            front_port = net.port(front_host)
            config = work / "front.toml"
            config.write_text(FRONT_CONFIG.format(front=f"{front_host.address}:{front_port}",
                                                  alpha=alpha.url, beta=beta.url))
            front = ServerProc(front_host, front_port, ["--config", str(config)], work,
                               listen=False)
            for server in (alpha, beta, front):  # the front opens its imports at start
                servers.append(server)
                server.start()
            client = ClientThread(net["client"])
            # beta's seed goes in through beta itself: the image is the server's
            client.call(_attach(client, beta, proc_id=2).write_bytes("hello.txt", BETA_SEED))
            yield Federation(net, alpha, beta, front, export, image, client,
                             _attach(client, front, proc_id=1))
        finally:
            if client is not None:
                client.close()
            for server in reversed(servers):
                server.stop()
    # the image the front wrote through beta is consistent once beta has stopped
    fsck = subprocess.run([shutil.which("e2fsck") or "/usr/sbin/e2fsck", "-fn", str(image)],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def _errno_of(fed: Federation, coro: Coroutine[Any, Any, object]) -> int:
    try:
        fed.client.call(coro)
    except OSError as exc:
        assert exc.errno is not None
        return exc.errno
    raise AssertionError("the call succeeded")


def test_one_tree_from_two_hosts(fed: Federation) -> None:
    print(f"hosts: {fed.net.mode} ({', '.join(h.address for h in fed.net.hosts.values())})")
    call = fed.client.call
    assert sorted(call(fed.tree.listdir("/"))) == ["alpha", "beta", "gamma"]
    assert call(fed.tree.read_bytes("/alpha/hello.txt")) == ALPHA_SEED
    assert call(fed.tree.read_bytes("/beta/hello.txt")) == BETA_SEED
    assert "hello.txt" in call(fed.tree.listdir("/beta"))
    # the two imports keep their files apart: no two qids of the tree collide
    alpha_qid = call(fed.tree.stat("/alpha/hello.txt")).st_ino
    beta_qid = call(fed.tree.stat("/beta/hello.txt")).st_ino
    assert alpha_qid != beta_qid


def test_writes_reach_the_back_servers(fed: Federation) -> None:
    call = fed.client.call
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one Twrite at any msize
    call(fed.tree.write_bytes("/alpha/written.bin", data))
    assert (fed.export / "written.bin").read_bytes() == data
    call(fed.tree.write_bytes("/beta/written.bin", data[::-1]))
    direct = fed.attach(fed.beta, proc_id=3)
    assert call(direct.read_bytes("written.bin")) == data[::-1]
    assert call(fed.tree.stat("/beta/written.bin")).st_size == len(data)
    call(fed.tree.mkdir("/beta/dir"))
    call(fed.tree.write_bytes("/beta/dir/leaf", b"leaf\n"))
    assert call(direct.listdir("dir")) == ["leaf"]


def test_rename_within_one_back_server(fed: Federation) -> None:
    call = fed.client.call
    for top in ("alpha", "beta"):
        call(fed.tree.mkdir(f"/{top}/moves"))
        call(fed.tree.mkdir(f"/{top}/moves/sub"))
        call(fed.tree.write_bytes(f"/{top}/moves/from", top.encode()))
        call(fed.tree.rename(f"/{top}/moves/from", f"/{top}/moves/sub/to"))
        assert call(fed.tree.read_bytes(f"/{top}/moves/sub/to")) == top.encode()
        assert not call(fed.tree.exists(f"/{top}/moves/from"))
    assert (fed.export / "moves" / "sub" / "to").read_bytes() == b"alpha"


def test_across_back_servers_is_exdev(fed: Federation) -> None:
    call = fed.client.call
    call(fed.tree.write_bytes("/alpha/crossing", b"stays on alpha\n"))
    assert _errno_of(fed, fed.tree.rename("/alpha/crossing", "/beta/crossing")) == errno.EXDEV
    assert _errno_of(fed, fed.tree.link("/alpha/crossing", "/beta/crossing")) == errno.EXDEV
    assert call(fed.tree.read_bytes("/alpha/crossing")) == b"stays on alpha\n"
    assert not call(fed.tree.exists("/beta/crossing"))


@pytest.mark.parametrize("top", ["alpha", "beta"])
def test_locks_conflict_across_servers(fed: Federation, top: str) -> None:
    """A lock taken through the front holds against a client of the back server, and
    the other way round: the front forwards Tlock rather than keeping its own."""
    call = fed.client.call
    back = fed.alpha if top == "alpha" else fed.beta
    call(fed.tree.write_bytes(f"/{top}/locked", b"x" * 4096))
    direct = fed.attach(back, proc_id=4)
    via_front = call(fed.tree.open(f"/{top}/locked", "r+b"))
    at_back = call(direct.open("locked", "r+b"))
    call(via_front.lock(LOCK_WRLCK, 0, 100))
    assert _errno_of(fed, at_back.lock(LOCK_WRLCK, 50, 10)) == errno.EAGAIN
    held = call(at_back.getlock(LOCK_WRLCK, 0, 0))
    assert held.type == LOCK_WRLCK and held.start == 0 and held.length == 100
    call(at_back.lock(LOCK_WRLCK, 100, 10))  # past the front's range: no conflict
    call(via_front.lock(LOCK_UNLCK, 0, 100))
    call(at_back.lock(LOCK_WRLCK, 0, 50))
    assert _errno_of(fed, via_front.lock(LOCK_WRLCK, 0, 1)) == errno.EAGAIN
    call(at_back.lock(LOCK_UNLCK, 0, 0))
    call(via_front.lock(LOCK_WRLCK, 0, 1))
    call(via_front.close())
    call(at_back.close())


def test_a_stalled_back_server_holds_up_nothing_else(fed: Federation) -> None:
    """alpha stopped (SIGSTOP: its socket stays open, nothing answers): a read through
    the front waits, while beta, the front's root and another connection to the front
    answer; the read completes once alpha runs again."""
    call = fed.client.call
    call(fed.tree.write_bytes("/alpha/stalled", b"waited for\n"))
    alpha = call(fed.tree.subtree("/alpha"))
    other = fed.attach(fed.front, proc_id=9)
    assert fed.alpha.proc is not None
    pid = fed.alpha.proc.pid

    async def start_read() -> asyncio.Future[bytes]:
        return asyncio.ensure_future(alpha.read_bytes("stalled"))

    os.kill(pid, signal.SIGSTOP)
    try:
        pending = call(start_read())
        assert call(fed.tree.read_bytes("/beta/hello.txt")) == BETA_SEED
        assert sorted(call(fed.tree.listdir("/"))) == ["alpha", "beta", "gamma"]
        assert call(other.read_bytes("/beta/hello.txt")) == BETA_SEED
        call(other.write_bytes("/beta/while-alpha-stalls", b"beta\n"))

        async def still_waiting() -> bool:
            return not pending.done()
        assert call(still_waiting()), "the read through the stopped alpha was answered"
    finally:
        os.kill(pid, signal.SIGCONT)

    async def finish() -> bytes:
        return await pending
    assert call(finish()) == b"waited for\n"


@contextlib.contextmanager
def alpha_down(fed: Federation) -> Iterator[Tree]:
    """alpha stopped for the block (which gets a tree rooted at /alpha, whose walks
    are of one name at a time, as Linux's v9fs sends them: a Twalk of several names
    that fails past the first is a short Rwalk (walk(5)), which says only ENOENT);
    after it alpha runs again and the import answers again."""
    alpha = fed.client.call(fed.tree.subtree("/alpha"))
    fed.alpha.stop()
    try:
        yield alpha
    finally:
        fed.alpha.start()
    for _ in range(300):  # the reconnect backs off to 5 s between tries at most
        try:
            fed.client.call(alpha.stat(""))
            return
        except OSError as exc:
            assert exc.errno == errno.EIO, exc
            time.sleep(0.1)
    raise AssertionError(f"the import did not come back after alpha restarted\n{fed.logs()}")


def test_an_image_on_an_import(fed: Federation) -> None:
    """/gamma is an ext2 image that is a file on alpha: its own file system (EXDEV to
    and from it), and while served its container stays in place (vfs/image_claims.py)."""
    call = fed.client.call
    container = "/alpha/images/gamma.img"
    assert call(fed.tree.read_bytes("/gamma/os-release")) == GAMMA_SEED
    assert call(fed.tree.statfs("/gamma")).f_type == 0xEF53  # EXT2_SUPER_MAGIC
    assert _errno_of(fed, fed.tree.rename("/gamma/os-release", "/alpha/os-release")) \
        == errno.EXDEV
    assert _errno_of(fed, fed.tree.remove(container)) == errno.EBUSY
    assert _errno_of(fed, fed.tree.rename(container, "/alpha/images/moved.img")) == errno.EBUSY
    assert _errno_of(fed, fed.tree.open(container, "r+b")) == errno.ETXTBSY
    assert _errno_of(fed, fed.tree.truncate(container, 0)) == errno.ETXTBSY
    assert (fed.export / "images" / "gamma.img").stat().st_size == 8 * 1024 * 1024


def test_back_server_restart_is_eio_then_recovers(fed: Federation) -> None:
    """alpha goes away under an open file: the client gets EIO, not a hang, and beta
    is not held up; once alpha is back the import reconnects by itself (docs/backends.md:
    walked files are found again, files open across the restart stay EIO)."""
    call = fed.client.call
    call(fed.tree.write_bytes("/alpha/survivor", b"before the restart\n"))
    opened = call(fed.tree.open("/alpha/survivor", "rb"))
    walked = call(fed.tree.walk("/alpha/survivor"))
    assert call(opened.pread(0, 6)) == b"before"
    with alpha_down(fed) as alpha:
        assert _errno_of(fed, opened.pread(0, 6)) == errno.EIO
        assert _errno_of(fed, alpha.read_bytes("survivor")) == errno.EIO
        assert _errno_of(fed, alpha.write_bytes("new", b"x")) == errno.EIO
        assert _errno_of(fed, fed.tree.stat("/alpha")) == errno.EIO
        assert _errno_of(fed, fed.tree.listdir("/alpha")) == errno.EIO
        # the other import answers meanwhile
        assert call(fed.tree.read_bytes("/beta/hello.txt")) == BETA_SEED
        call(fed.tree.write_bytes("/beta/while-alpha-is-down", b"beta\n"))
    assert call(alpha.read_bytes("survivor")) == b"before the restart\n"
    assert call(walked.getattr()).size == len(b"before the restart\n")
    assert _errno_of(fed, opened.pread(0, 6)) == errno.EIO
    call(opened.close())
    call(fed.tree.write_bytes("/alpha/after", b"after\n"))
    assert (fed.export / "after").read_bytes() == b"after\n"


def test_a_dead_import_leaves_the_directory_above_it_listable(fed: Federation) -> None:
    with alpha_down(fed):
        assert sorted(fed.client.call(fed.tree.listdir("/"))) == ["alpha", "beta", "gamma"]


def test_mkdir_of_an_import_point_is_eexist(fed: Federation) -> None:
    assert _errno_of(fed, fed.tree.mkdir("/alpha")) == errno.EEXIST
