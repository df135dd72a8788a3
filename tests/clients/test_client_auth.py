"""Client.attach(key=...), SyncClient(key=...) and ``--key`` against a server that wants a key."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ninep.clients import Client, SyncClient
from ninep.clients.auth import answer_challenge, load_key
from ninep.clients.cli import main as client_main
from ninep.clients.errors import ProtocolError
from ninep.server.auth import Challenge
from ninep.wire import messages as m
from tests.auth_policy import PUBLIC_FILE, SECRET_FILE, AuthServer, auth_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AuthServer]:
    yield from auth_server(tmp_path)


async def test_right_key_attaches(server: AuthServer) -> None:
    async with await Client.connect(server.running.tcp_url) as client:
        tree = await client.attach("alice", "secret", 1000, key=server.alice_file)
        assert await tree.read_bytes(SECRET_FILE) == b"secret\n"
        # a key object works as well as a file, on the unix socket too
    async with await Client.connect(server.running.unix_url) as client:
        tree = await client.attach("alice", "secret", 1000, key=server.alice)
        assert SECRET_FILE in await tree.listdir("")


async def test_wrong_key_and_no_key_are_refused(server: AuthServer) -> None:
    async with await Client.connect(server.running.tcp_url) as client:
        with pytest.raises(PermissionError):
            await client.attach("alice", "secret", 1000, key=server.mallory_file)
        with pytest.raises(PermissionError):
            await client.attach("alice", "secret", 1000)
        public = await client.attach("alice", "public", 1000)
        assert await public.listdir("") == [PUBLIC_FILE]


async def test_replayed_transcript_on_a_new_connection_is_refused(server: AuthServer) -> None:
    """Capture every T-message of a successful attach, resend them on a new connection."""
    sent: list[m.Message] = []

    def trace(direction: str, tag: int, msg: m.Message) -> None:
        if direction == "->":
            sent.append(msg)

    async with await Client.connect(server.running.tcp_url, trace=trace) as client:
        await client.attach("alice", "secret", 1000, key=server.alice)
    assert [type(x) for x in sent[1:5]] == [m.Tauth, m.Tread, m.Twrite, m.Tread]
    replies: list[m.Message] = []
    async with await Client.connect(server.running.tcp_url) as replay:
        for msg in sent[1:6]:
            try:
                replies.append(await replay.rpc(msg))
            except OSError as exc:
                replies.append(m.Rlerror(exc.errno or 0))
    kinds = [type(r) for r in replies]
    assert kinds[:2] == [m.Rauth, m.Rread]
    assert replies[2] == m.Rlerror(errno.EACCES)  # the captured signature
    assert replies[4] == m.Rlerror(errno.EACCES)  # the captured Tattach


async def test_key_given_to_a_server_without_auth_attaches(server: AuthServer) -> None:
    from ninep.config.defaults import default_policy
    from tests.conftest import start_server

    plain = start_server(default_policy)
    try:
        async with await Client.connect(plain.tcp_url) as client:
            tree = await client.attach("root", "", 0, key=server.alice_file)
            assert "README" in await tree.listdir("")
    finally:
        plain.stop()


def test_sync_client_with_key(server: AuthServer) -> None:
    with SyncClient(server.running.tcp_url, uname="alice", aname="secret", n_uname=1000,
                    key=server.alice_file) as fs:
        assert fs.read_bytes(SECRET_FILE) == b"secret\n"
    with pytest.raises(PermissionError):
        SyncClient(server.running.tcp_url, uname="alice", aname="secret", n_uname=1000,
                   key=server.mallory_file)


def test_cli_key_option(server: AuthServer, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--server", server.running.tcp_url, "--aname", "secret", "--uname", "alice",
              "--uid", "1000"]
    assert client_main(["cat", *common, "--key", str(server.alice_file), SECRET_FILE]) == 0
    assert capsys.readouterr().out == "secret\n"
    assert client_main(["cat", *common, "--key", str(server.mallory_file), SECRET_FILE]) == 1
    assert "denied" in capsys.readouterr().err.lower()
    assert client_main(["cat", *common, SECRET_FILE]) == 1


def test_load_key_formats(server: AuthServer, tmp_path: Path) -> None:
    pem = tmp_path / "pkcs8.pem"
    pem.write_bytes(server.alice.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    raw = serialization.PublicFormat.Raw
    expected = server.alice.public_key().public_bytes(serialization.Encoding.Raw, raw)
    for source in (server.alice_file, pem):
        assert load_key(source).public_key().public_bytes(serialization.Encoding.Raw,
                                                          raw) == expected
    junk = tmp_path / "junk"
    junk.write_text("not a key")
    with pytest.raises(ValueError, match="junk"):
        load_key(junk)


def test_client_refuses_a_challenge_for_another_attach(server: AuthServer) -> None:
    challenge = Challenge(bytes(32), bytes(32), 1, 1000, "root", "secret").encode()
    with pytest.raises(ProtocolError):
        answer_challenge(challenge, server.alice, "alice", "secret", 1000)
    with pytest.raises(ProtocolError):
        answer_challenge(challenge[:-1], server.alice, "root", "secret", 1000)


async def test_tls_connection_with_client_certificate_and_key(server: AuthServer,
                                                              tmp_path: Path) -> None:
    """Client.connect(tls=...) to a TLS listener, then Tauth over it."""
    import asyncio
    import ssl

    from ninep.certs import make_ca, make_client, make_server

    make_ca(tmp_path / "ca")
    make_server(tmp_path / "ca", tmp_path / "srv", "localhost")
    make_client(tmp_path / "ca", tmp_path / "cli", "laptop")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "srv" / "server.crt", tmp_path / "srv" / "server.key")
    server_ctx.load_verify_locations(tmp_path / "ca" / "ca.crt")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    running = server.running

    async def listen() -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_server(
            lambda: running.server.connection("tls"), "127.0.0.1", 0, ssl=server_ctx)

    listener = running.call(listen())
    try:
        port = listener.sockets[0].getsockname()[1]
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.crt"))
        ctx.load_cert_chain(tmp_path / "cli" / "laptop.crt", tmp_path / "cli" / "laptop.key")
        async with await Client.connect(f"tcp://127.0.0.1:{port}", tls=ctx,
                                        server_hostname="localhost") as client:
            tree = await client.attach("alice", "secret", 1000, key=server.alice)
            assert await tree.read_bytes(SECRET_FILE) == b"secret\n"
        with pytest.raises(ssl.SSLCertVerificationError):
            await Client.connect(f"tcp://127.0.0.1:{port}", tls=ctx, server_hostname="other")
    finally:
        running.loop.call_soon_threadsafe(listener.close)
