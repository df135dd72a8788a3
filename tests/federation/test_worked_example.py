"""docs/federation.md's worked example, served as written: its three config files (hosts,
paths and the key moved to this test's), real servers on three hosts, a client on a fourth."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from ninep.clients import Client, Tree
from ninep.config.file import load_config

from .hosts import ClientThread, Network, ServerProc, network

DOC = Path(__file__).resolve().parents[2] / "docs" / "federation.md"
HOSTS = ("alpha", "beta", "front", "client")  # 10.0.0.1 ... in the document


class Example(NamedTuple):
    """The client host's thread, alice's attach to the front, and the hosts' /srv."""

    client: ClientThread
    tree: Tree
    srv: Path


def doc_configs() -> list[str]:
    """The document's TOML blocks: alpha's, beta's and the front's, in that order."""
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 3, "docs/federation.md should hold three configs"
    return blocks


def _localize(text: str, net: Network, etc: Path, srv: Path) -> str:
    for number, name in enumerate(HOSTS, start=1):
        text = text.replace(f"10.0.0.{number}", net[name].address)
    text = text.replace("10.0.0.0/24", "10.99.0.0/24")
    return text.replace("/etc/ninep", str(etc)).replace("/srv", str(srv))


def test_the_configs_parse(tmp_path: Path) -> None:
    """Each block is a valid config file (kinds, options, policies) as written."""
    for number, block in enumerate(doc_configs()):
        path = tmp_path / f"{number}.toml"
        path.write_text(block)
        load_config(path)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    work = tmp_path_factory.mktemp("worked-example")
    etc, srv = work / "etc", work / "srv"
    (srv / "home" / "images").mkdir(parents=True)
    etc.mkdir()
    (srv / "home" / "notes.txt").write_bytes(b"alice's notes\n")
    (srv / "home" / "alice").mkdir()
    os.chown(srv / "home" / "alice", 1000, 1000)
    seed = work / "seed"
    seed.mkdir()
    (seed / "os-release").write_bytes(b"base image\n")
    mke2fs = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
    for image, contents in ((srv / "home" / "images" / "base.img", ["-d", str(seed)]),
                            (srv / "data.img", [])):
        subprocess.run([mke2fs, "-q", "-F", "-t", "ext2", *contents, str(image), "8M"],
                       check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "ninep", "cert", "keygen", "--out",
                    str(etc / "front.key"), "--comment", "front"],
                   check=True, capture_output=True)
    shutil.copy(etc / "front.key.pub", etc / "authorized_keys")
    servers: list[ServerProc] = []
    client: ClientThread | None = None
    with network(HOSTS) as net:
        if net.mode != "netns":
            pytest.skip("the example's policies match the front's own address: "
                        "it needs hosts of their own (network namespaces)")
        try:
            for name, block in zip(HOSTS, doc_configs(), strict=False):
                config = etc / f"{name}.toml"
                config.write_text(_localize(block, net, etc, srv))
                # the front listens on 0.0.0.0, as in the document
                server = ServerProc(net[name], 5640, ["--config", str(config)], work,
                                    listen=False, wildcard=name == "front")
                servers.append(server)
                server.start()
            client = ClientThread(net["client"])

            async def attach() -> Tree:
                connection = await Client.connect(servers[2].url)
                return await connection.attach("alice", n_uname=1000)
            yield Example(client, client.call(attach()), srv)
        finally:
            if client is not None:
                client.close()
            for server in reversed(servers):
                server.stop()


def test_the_client_sees_the_example_tree(example: Example) -> None:
    client, tree, _ = example
    assert sorted(client.call(tree.listdir("/"))) == ["data", "home", "images"]
    assert client.call(tree.read_bytes("/home/notes.txt")) == b"alice's notes\n"
    assert client.call(tree.read_bytes("/images/base/os-release")) == b"base image\n"
    assert "lost+found" in client.call(tree.listdir("/data")) or \
        client.call(tree.listdir("/data")) == []


def test_a_file_a_client_makes_is_its_own_on_the_back_server(example: Example) -> None:
    """The front imports as root and gives what alice (uid 1000) creates to her; she
    cannot write where her uid may not, whatever the front's own rights there."""
    client, tree, srv = example
    client.call(tree.write_bytes("/home/alice/new.txt", b"mine\n"))
    assert (srv / "home" / "alice" / "new.txt").stat().st_uid == 1000
    assert client.call(tree.stat("/home/alice/new.txt")).st_uid == 1000
    with pytest.raises(OSError) as refused:
        client.call(tree.write_bytes("/home/not-hers.txt", b"x"))
    assert refused.value.errno == errno.EACCES


def test_a_back_server_lets_only_the_front_in(example: Example) -> None:
    """The client host reaches alpha, but alpha's policy wants the front's key."""
    client = example.client

    async def attach_alpha() -> None:
        connection = await Client.connect("tcp://10.99.0.1:5640")
        try:
            await connection.attach("root", n_uname=0)
        finally:
            await connection.close()
    with pytest.raises(OSError) as refused:
        client.call(attach_alpha())
    assert refused.value.errno == errno.EACCES
