"""Identity against a real ``ninep serve`` process: what a SIGHUP reload leaves the
attaches made before it (narrowed at once, never widened)."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import time
from pathlib import Path

import pytest

from ninep.wire import messages as m
from ninep.wire.constants import GETATTR_ALL
from tests.conftest import RawPeer, free_port
from tests.hostile.serverproc import ServerProcess, serve_process

EROFS, ESTALE = m.Rlerror(errno.EROFS), m.Rlerror(errno.ESTALE)
O_RDONLY, O_RDWR = 0, 2


def ram(name: str, who: str = "") -> str:
    who_mount = f', {{ path = "/who", backend = "inline", source = "{who}" }}' if who else ""
    return (f'[namespaces.{name}]\nmounts = [{{ path = "/", backend = "ram", '
            f'options = {{ mode = "1777" }} }}{who_mount}]\n')


def policy(name: str, namespace: str, extra: str = "") -> str:
    return f'[[policy]]\nname = "{name}"\nnamespace = "{namespace}"\n{extra}\n'


def reload(server: ServerProcess, config: Path, text: str) -> None:
    """Write the new config, SIGHUP, and wait for the server to say it reloaded."""
    before = server.log_text().count("reloaded ")
    config.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30  # a hung server, not a speed bound
    while server.log_text().count("reloaded ") == before:
        assert time.monotonic() < deadline, server.log_text()
        assert "reload rejected" not in server.log_text(), server.log_text()
        time.sleep(0.02)


def attached(server: ServerProcess, aname: str = "", fid: int = 1) -> RawPeer:
    peer = RawPeer(server.address)
    assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
    reply = peer.rpc(m.Tattach(fid, m.NOFID, "root", aname, 0))
    assert isinstance(reply, m.Rattach), reply
    return peer


def create_open(peer: RawPeer, root: int, fid: int, name: str) -> None:
    assert isinstance(peer.rpc(m.Twalk(root, fid, ())), m.Rwalk)
    reply = peer.rpc(m.Tlcreate(fid, name, O_RDWR, 0o644, 0))
    assert isinstance(reply, m.Rlcreate), reply


def test_a_reload_that_makes_a_policy_read_only_narrows_open_fids_at_once(
        tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text(ram("data") + policy("everyone", "data"))
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = attached(server)
        create_open(peer, 1, 2, "open-before")
        assert peer.rpc(m.Twrite(2, 0, b"before")) == m.Rwrite(6)

        reload(server, config, ram("data") + policy("everyone", "data", "read_only = true"))
        assert peer.rpc(m.Twrite(2, 0, b"after!")) == EROFS  # through a fid opened before
        assert bytes(peer.rpc(m.Tread(2, 0, 100)).data) == b"before"  # type: ignore[attr-defined]
        assert isinstance(peer.rpc(m.Twalk(1, 3, ())), m.Rwalk)
        assert peer.rpc(m.Tlcreate(3, "new", O_RDWR, 0o644, 0)) == EROFS
        assert peer.rpc(m.Tmkdir(1, "dir", 0o755, 0)) == EROFS
        assert peer.rpc(m.Tunlinkat(1, "open-before", 0)) == EROFS
        assert isinstance(peer.rpc(m.Tclunk(2)), m.Rclunk)
        peer.close()
        assert "is read-only now (2 fids): policy 'everyone' is read-only now" in \
            server.log_text()


def test_a_reload_that_removes_a_namespace_revokes_its_attaches_and_keeps_the_others(
        tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    both = (ram("gone") + ram("kept") + policy("gone", "gone", 'match = { aname = "gone" }')
            + policy("kept", "kept", 'match = { aname = "kept" }'))
    config.write_text(both)
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = attached(server, "gone")
        create_open(peer, 1, 2, "open-before")
        assert isinstance(peer.rpc(m.Tattach(10, m.NOFID, "root", "kept", 0)), m.Rattach)

        reload(server, config, ram("kept") + policy("kept", "kept", 'match = { aname = "kept" }'))
        assert peer.rpc(m.Twrite(2, 0, b"after")) == ESTALE
        assert peer.rpc(m.Tread(2, 0, 100)) == ESTALE
        assert peer.rpc(m.Tgetattr(1, GETATTR_ALL)) == ESTALE
        assert peer.rpc(m.Twalk(1, 3, ())) == m.Rwalk(())  # a clone is as stale as its fid
        assert peer.rpc(m.Tlcreate(3, "new", O_RDWR, 0o644, 0)) == ESTALE
        assert peer.rpc(m.Tmkdir(1, "dir", 0o755, 0)) == ESTALE
        assert isinstance(peer.rpc(m.Tclunk(2)), m.Rclunk)  # closes what it held
        # the other attach of the same connection keeps its namespace
        assert isinstance(peer.rpc(m.Tmkdir(10, "dir", 0o755, 0)), m.Rmkdir)
        peer.close()
        assert "revoked (2 fids): no policy matches it now" in server.log_text()


def test_an_address_matched_identity_moved_to_another_namespace_loses_the_old_one(
        tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    local = 'match = { address = "127.0.0.0/8" }'
    config.write_text(ram("one", "one") + ram("two", "two") + policy("local", "one", local))
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = attached(server)
        assert isinstance(peer.rpc(m.Twalk(1, 2, ("who",))), m.Rwalk)
        assert isinstance(peer.rpc(m.Tlopen(2, O_RDONLY)), m.Rlopen)

        reload(server, config, ram("one", "one") + ram("two", "two") + policy("local", "two", local))
        assert peer.rpc(m.Tread(2, 0, 100)) == ESTALE
        assert peer.rpc(m.Twalk(1, 3, ("who",))) == ESTALE
        fresh = attached(server)
        assert isinstance(fresh.rpc(m.Twalk(1, 2, ("who",))), m.Rwalk)
        assert isinstance(fresh.rpc(m.Tlopen(2, O_RDONLY)), m.Rlopen)
        assert bytes(fresh.rpc(m.Tread(2, 0, 100)).data) == b"two\n"  # type: ignore[attr-defined]
        fresh.close()
        peer.close()
        assert "policy 'local' gives it namespace 'two' now" in server.log_text()


def test_rights_that_grow_wait_for_the_next_attach(tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text(ram("data") + policy("everyone", "data", "read_only = true"))
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = attached(server)
        reload(server, config, ram("data") + policy("everyone", "data"))
        assert peer.rpc(m.Tmkdir(1, "dir", 0o755, 0)) == EROFS
        fresh = attached(server)
        assert isinstance(fresh.rpc(m.Tmkdir(1, "dir", 0o755, 0)), m.Rmkdir)
        fresh.close()
        peer.close()


# --- identities a client makes up ------------------------------------------------

def test_a_nul_in_the_uname_is_einval_without_a_traceback(tmp_path: Path) -> None:
    with serve_process(["--mount", "/=ram"], tmp_path, log_level="debug") as server:
        peer = RawPeer(server.address)
        assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
        # the first attach of the connection: no passwd entry can hold a NUL, and a C
        # server would read "root" alone
        assert peer.rpc(m.Tattach(1, m.NOFID, "root\0evil", "", m.NONUNAME)) == \
            m.Rlerror(errno.EINVAL)
        assert isinstance(peer.rpc(m.Tattach(1, m.NOFID, "root", "", m.NONUNAME)), m.Rattach)
        peer.close()
        assert "Traceback" not in server.log_text()
        assert "ERROR" not in server.log_text()


def test_the_credential_cache_keeps_its_bound_under_many_unames() -> None:
    from ninep.server import session
    async def attach_all() -> None:
        for i in range(session.CRED_CACHE_SIZE + 500):
            cred = await session.resolve_cred(f"no-such-user-{i}", m.NONUNAME)
            assert cred.uid == 65534  # unknown: nobody
        assert await session.resolve_cred("", 0) == await session.resolve_cred("x", 0)
        for i in range(100):  # longer than any user name: nobody, and not remembered
            assert (await session.resolve_cred(f"{i}" + "u" * 100_000, m.NONUNAME)).uid == 65534

    session.forget_creds()
    asyncio.run(attach_all())
    assert len(session._cred_cache) == session.CRED_CACHE_SIZE
    assert ("no-such-user-0", m.NONUNAME) not in session._cred_cache  # the oldest went first
    # entries are small as well as few: a name no user can have is not remembered
    assert sum(len(uname) for uname, _ in session._cred_cache) <= \
        session.CRED_CACHE_SIZE * session.LOGIN_NAME_MAX
    session.forget_creds()


def test_refusals_from_one_peer_are_logged_a_few_times_then_counted(tmp_path: Path) -> None:
    config = tmp_path / "ninep.toml"
    config.write_text(ram("data") + policy("only x", "data", 'match = { aname = "x" }'))
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = RawPeer(server.address)
        assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
        long_name = "u" * 10_000
        for i in range(200):
            reply = peer.rpc(m.Tattach(1, m.NOFID, f"{long_name}{i}\x1b[2J", "", m.NONUNAME))
            assert reply == m.Rlerror(errno.EACCES)
        assert isinstance(peer.rpc(m.Tattach(1, m.NOFID, "root", "x", m.NONUNAME)), m.Rattach)
        peer.close()
        log = server.log_text()
    refused = [line for line in log.splitlines() if "attach refused" in line]
    assert len(refused) == 10
    assert "127.0.0.1: more than 10 refusals within 60 s" in log
    assert max(len(line) for line in refused) < 600  # the 10,000-character unames are cut
    assert "\x1b" not in log


# --- root, and policies open to the network -----------------------------------------

def wait_for_text(server: ServerProcess, text: str) -> str:
    deadline = time.monotonic() + 30  # a hung server, not a speed bound
    while text not in server.log_text():
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.02)
    return server.log_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is for a server running as root")
def test_root_with_an_open_policy_on_a_network_listener_is_warned_about(
        tmp_path: Path) -> None:
    port = free_port()
    args = ["--mount", "/=ram", "--listen", f"tcp://0.0.0.0:{port}"]
    with serve_process(args, tmp_path) as server:
        log = wait_for_text(server, f"listening on tcp://0.0.0.0:{port}")
        assert re.search(rf"running as root, and policy '[^']+' lets anyone who reaches "
                         rf"tcp://0\.0\.0\.0:{port} attach without authenticating", log)
        assert "reaches tcp://127.0.0.1" not in log  # loopback is this host's own


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is for a server running as root")
def test_the_warning_comes_again_after_a_reload_that_opens_a_policy(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "ninep.toml"
    proven = 'match = { transport = "unix", peer_uid = 0 }'
    local = 'match = { address = ["127.0.0.0/8", "::1"] }'
    config.write_text(ram("data") + policy("root on the socket", "data", proven)
                      + policy("this host", "data", local))
    args = ["--config", str(config), "--listen", f"tcp://0.0.0.0:{port}"]
    with serve_process(args, tmp_path) as server:
        wait_for_text(server, f"listening on tcp://0.0.0.0:{port}")
        assert "running as root" not in server.log_text()
        reload(server, config, ram("data") + policy("anyone", "data"))
        assert (f"running as root, and policy 'anyone' lets anyone who reaches "
                f"tcp://0.0.0.0:{port}") in server.log_text()


def test_an_open_still_running_during_the_reload_is_revoked_when_it_ends(
        tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    os.mkfifo(export / "pipe")  # an open for reading waits until a writer comes
    config = tmp_path / "ninep.toml"
    shared = ('[namespaces.other]\nmounts = [{ path = "/", backend = "ram" }]\n'
              + policy("other", "other", 'match = { aname = "other" }'))
    config.write_text(f'[namespaces.data]\nmounts = [{{ path = "/", backend = "passthrough", '
                      f'source = "{export}" }}]\n' + policy("data", "data") + shared)
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = attached(server)
        assert isinstance(peer.rpc(m.Twalk(1, 2, ("pipe",))), m.Rwalk)
        peer.send(5, m.Tlopen(2, O_RDONLY))
        # answered after the open has started: requests start in the order they come
        assert isinstance(peer.rpc(m.Tgetattr(1, GETATTR_ALL), tag=6), m.Rgetattr)

        reload(server, config, shared)  # the namespace is gone
        writer = os.open(export / "pipe", os.O_WRONLY)  # the open waiting ends now
        try:
            os.write(writer, b"data")
            tag, reply = peer.recv()
            assert tag == 5, reply
            assert peer.rpc(m.Tread(2, 0, 100)) == ESTALE
        finally:
            os.close(writer)
        assert isinstance(peer.rpc(m.Tclunk(2)), m.Rclunk)
        peer.close()


def test_a_key_taken_out_of_authorized_keys_revokes_the_attaches_it_proved(
        tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ninep.clients.auth import answer_challenge

    alice = Ed25519PrivateKey.generate()
    line = alice.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    keys = tmp_path / "authorized_keys"
    keys.write_text(f"{line} alice@test\n")
    config = tmp_path / "ninep.toml"
    text = (f'[auth]\nauthorized_keys = "{keys}"\n' + ram("secret")
            + policy("alice", "secret", 'match = { key = "alice@test" }'))
    config.write_text(text)
    with serve_process(["--config", str(config)], tmp_path) as server:
        peer = RawPeer(server.address)
        assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
        assert isinstance(peer.rpc(m.Tauth(9, "alice", "", 1000)), m.Rauth)
        challenge = bytes(peer.rpc(m.Tread(9, 0, 4096)).data)  # type: ignore[attr-defined]
        response = answer_challenge(challenge, alice, "alice", "", 1000)
        assert isinstance(peer.rpc(m.Twrite(9, 0, response)), m.Rwrite)
        peer.rpc(m.Tread(9, 0, 4096))  # the status
        assert isinstance(peer.rpc(m.Tattach(1, 9, "alice", "", 1000)), m.Rattach)
        create_open(peer, 1, 2, "kept-secret")

        keys.write_text("# alice's key was taken out\n")
        reload(server, config, text)  # the same config file
        assert peer.rpc(m.Twrite(2, 0, b"more")) == ESTALE
        # nor does the proof serve a later attach on the connection (afid NOFID)
        assert peer.rpc(m.Tattach(3, m.NOFID, "alice", "", 1000)) == m.Rlerror(errno.EACCES)
        peer.close()
        assert "revoked (2 fids): no policy matches it now" in server.log_text()
