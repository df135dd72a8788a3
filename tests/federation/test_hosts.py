"""The federation harness itself: hosts that are separate network stacks, and cleanup."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ninep.clients import Client

from .hosts import ClientThread, ServerProc, network


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_a_server_on_one_host_serves_a_client_on_another(tmp_path: Path) -> None:
    with network(("server", "client")) as net:
        server = ServerProc(net["server"], net.port(net["server"]), ["--mount", "/=ram"],
                            tmp_path)
        client = None
        try:
            server.start()
            client = ClientThread(net["client"])

            async def roundtrip() -> tuple[bytes, int]:
                async with await Client.connect(server.url) as connection:
                    tree = await connection.attach("root", n_uname=0)
                    await tree.write_bytes("f", b"across hosts\n")
                    return await tree.read_bytes("f"), _netns_inode()

            data, client_netns = client.call(roundtrip())
            assert data == b"across hosts\n"
            if net.mode == "netns":  # the client's sockets live in another network stack
                assert client_netns != _netns_inode()
                assert server.host.address == "10.99.0.1"
            else:
                assert server.host.address == "127.0.0.1"
        finally:
            if client is not None:
                client.close()
            server.stop()
        assert server.proc is not None and server.proc.returncode is not None
        names = list(net.namespaces)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert names == [] or not any(name in listed for name in names)


def test_the_namespaces_go_when_the_test_fails() -> None:
    made: list[str] = []
    try:
        with network(("one", "two")) as net:
            made = list(net.namespaces)
            raise RuntimeError("a failing test")
    except RuntimeError:
        pass
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed.split() for name in made)
