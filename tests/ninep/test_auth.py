"""Tauth on the wire: the exchange of docs/auth.md against a real server, byte by byte."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ninep.server.auth import (
    CHALLENGE_MAGIC,
    QTAUTH,
    Challenge,
    Status,
    decode_challenge,
    decode_response,
    decode_status,
    encode_response,
    key_fingerprint,
    parse_authorized_keys,
    public_key_blob,
    signed_message,
)
from ninep.wire import messages as m
from tests.auth_policy import PUBLIC_FILE, SECRET_FILE, AuthServer, auth_server
from tests.conftest import RawPeer, RunningServer

AFID, FID = 7, 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AuthServer]:
    yield from auth_server(tmp_path)


@pytest.fixture
def peers(server: AuthServer) -> Iterator[list[RawPeer]]:
    made: list[RawPeer] = []
    yield made
    for peer in made:
        peer.close()


def connect(server: AuthServer, peers: list[RawPeer]) -> RawPeer:
    peer = RawPeer(("127.0.0.1", server.running.port))
    peers.append(peer)
    reply = peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG)
    assert isinstance(reply, m.Rversion)
    return peer


def errno_of(reply: m.Message) -> int:
    assert isinstance(reply, m.Rlerror), reply
    return reply.ecode


def start(peer: RawPeer, uname: str = "alice", aname: str = "secret", n_uname: int = 1000,
          afid: int = AFID) -> bytes:
    """Tauth and read the challenge."""
    reply = peer.rpc(m.Tauth(afid, uname, aname, n_uname))
    assert isinstance(reply, m.Rauth) and reply.aqid.type == QTAUTH
    challenge = peer.rpc(m.Tread(afid, 0, 4096))
    assert isinstance(challenge, m.Rread)
    return bytes(challenge.data)


def response(key: Ed25519PrivateKey, challenge: bytes) -> bytes:
    blob = public_key_blob(key.public_key())
    return encode_response(blob, key.sign(signed_message(challenge, blob)))


def attach(peer: RawPeer, afid: int = AFID, uname: str = "alice", aname: str = "secret",
           n_uname: int = 1000, fid: int = FID) -> m.Message:
    return peer.rpc(m.Tattach(fid, afid, uname, aname, n_uname))


def sees(peer: RawPeer, name: str, fid: int = FID) -> bool:
    reply = peer.rpc(m.Twalk(fid, 99, (name,)))
    if isinstance(reply, m.Rwalk):
        peer.rpc(m.Tclunk(99))
        return True
    return False


# --- the codec ---------------------------------------------------------------

def test_challenge_layout_is_as_documented() -> None:
    c = Challenge(bytes(range(32)), bytes(32), 7, 1000, "alice", "secret")
    data = c.encode()
    assert data[:16] == CHALLENGE_MAGIC == b"ninep-auth1-chal"
    assert data[16:48] == bytes(range(32))
    assert data[80:84] == (7).to_bytes(4, "little")
    assert data[84:88] == (1000).to_bytes(4, "little")
    assert data[88:90] == (5).to_bytes(2, "little") and data[90:95] == b"alice"
    assert data[95:97] == (6).to_bytes(2, "little") and data[97:] == b"secret"
    assert decode_challenge(data) == c


def test_response_layout_is_as_documented() -> None:
    key = Ed25519PrivateKey.generate()
    blob = public_key_blob(key.public_key())
    assert blob[:19] == b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" and len(blob) == 51
    resp = encode_response(blob, b"S" * 64)
    assert len(resp) == 135 and resp[:16] == b"ninep-auth1-resp"
    assert resp[16:18] == (51).to_bytes(2, "little") and resp[18:69] == blob
    assert resp[69:71] == (64).to_bytes(2, "little") and resp[71:] == b"S" * 64
    assert signed_message(b"C", blob) == b"ninep-auth1-sign" + b"C" + resp[16:69]
    status = Status(True, "SHA256:abc").encode()
    assert status == b"ninep-auth1-stat" + b"\x00" + b"\x0a\x00" + b"SHA256:abc"


@pytest.mark.parametrize("cut", [0, 15, 16, 47, 90, 96])
def test_truncated_messages_are_rejected(cut: int) -> None:
    data = Challenge(bytes(32), bytes(32), 1, 2, "u", "aname").encode()
    with pytest.raises(ValueError):
        decode_challenge(data[:cut])
    with pytest.raises(ValueError):
        decode_challenge(data + b"x")
    resp = encode_response(b"k" * 51, b"s" * 64)
    assert decode_response(resp) == (b"k" * 51, b"s" * 64)
    with pytest.raises(ValueError):
        decode_response(resp[:min(cut, len(resp) - 1)])
    assert decode_status(Status(True, "SHA256:x").encode()) == Status(True, "SHA256:x")


def test_authorized_keys_parsing(caplog: pytest.LogCaptureFixture) -> None:
    key = Ed25519PrivateKey.generate()
    blob = public_key_blob(key.public_key())
    import base64
    b64 = base64.b64encode(blob).decode()
    text = (f"# comment\n\nssh-ed25519 {b64} alice@laptop extra words\n"
            f'from="10.0.0.1" ssh-ed25519 {b64} restricted\n'
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ bob\n"
            "ssh-ed25519 not-base64!! eve\n"
            f"ssh-ed25519 {base64.b64encode(b'short').decode()} eve\n")
    with caplog.at_level(logging.WARNING):
        keys = parse_authorized_keys(text, "ak")
    assert list(keys) == [blob]
    entry = keys[blob]
    assert entry.comment == "alice@laptop extra words"
    assert entry.key_ids == {key_fingerprint(blob), "alice@laptop extra words"}
    assert "ak:4: line skipped: options before the key type" in caplog.text
    assert "ak:5" in caplog.text and "ak:6" in caplog.text and "ak:7" in caplog.text


# --- the exchange on a real server -------------------------------------------

def test_right_key_attaches_to_its_namespace(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    challenge = start(peer)
    parsed = decode_challenge(challenge)
    assert (parsed.afid, parsed.uname, parsed.aname, parsed.n_uname) == (AFID, "alice",
                                                                        "secret", 1000)
    resp = response(server.alice, challenge)
    reply = peer.rpc(m.Twrite(AFID, 0, resp))
    assert isinstance(reply, m.Rwrite) and reply.count == len(resp)
    status = peer.rpc(m.Tread(AFID, 0, 4096))
    assert isinstance(status, m.Rread)
    assert decode_status(bytes(status.data)) == Status(True, server.alice_fingerprint)
    assert isinstance(attach(peer), m.Rattach)
    assert sees(peer, SECRET_FILE) and not sees(peer, PUBLIC_FILE)
    # the same afid may serve a second attach of the same uname/aname
    assert isinstance(attach(peer, fid=2), m.Rattach)


def test_wrong_key_is_refused(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    challenge = start(peer)
    assert errno_of(peer.rpc(m.Twrite(AFID, 0, response(server.mallory, challenge)))) == \
        errno.EACCES
    status = peer.rpc(m.Tread(AFID, 0, 4096))
    assert isinstance(status, m.Rread) and not decode_status(bytes(status.data)).accepted
    assert errno_of(attach(peer)) == errno.EACCES


def test_listed_key_with_a_forged_signature_is_refused(server: AuthServer,
                                                       peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    challenge = start(peer)
    blob = public_key_blob(server.alice.public_key())
    forged = encode_response(blob, server.mallory.sign(signed_message(challenge, blob)))
    assert errno_of(peer.rpc(m.Twrite(AFID, 0, forged))) == errno.EACCES
    assert errno_of(attach(peer)) == errno.EACCES


def test_signature_without_the_domain_separator_is_refused(server: AuthServer,
                                                          peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    challenge = start(peer)
    blob = public_key_blob(server.alice.public_key())
    bare = encode_response(blob, server.alice.sign(challenge))
    assert errno_of(peer.rpc(m.Twrite(AFID, 0, bare))) == errno.EACCES


def test_replayed_response_on_another_connection_is_refused(server: AuthServer,
                                                            peers: list[RawPeer]) -> None:
    first = connect(server, peers)
    captured = response(server.alice, start(first))
    assert isinstance(first.rpc(m.Twrite(AFID, 0, captured)), m.Rwrite)
    second = connect(server, peers)
    start(second)  # same afid number, same uname/aname: only the nonces differ
    assert errno_of(second.rpc(m.Twrite(AFID, 0, captured))) == errno.EACCES
    assert errno_of(attach(second)) == errno.EACCES


def test_replay_on_a_new_afid_of_the_same_connection_is_refused(server: AuthServer,
                                                                peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    captured = response(server.alice, start(peer))
    assert isinstance(peer.rpc(m.Twrite(AFID, 0, captured)), m.Rwrite)
    start(peer, afid=AFID + 1)
    assert errno_of(peer.rpc(m.Twrite(AFID + 1, 0, captured))) == errno.EACCES
    assert errno_of(attach(peer, afid=AFID + 1)) == errno.EACCES


@pytest.mark.parametrize("cut", [0, 10, 40, 70, 118])
def test_truncated_response_is_refused_and_the_afid_is_spent(server: AuthServer,
                                                             peers: list[RawPeer],
                                                             cut: int) -> None:
    peer = connect(server, peers)
    resp = response(server.alice, start(peer))
    assert errno_of(peer.rpc(m.Twrite(AFID, 0, resp[:cut]))) == errno.EACCES
    # one attempt per afid: the full, valid response now comes too late
    assert errno_of(peer.rpc(m.Twrite(AFID, 0, resp))) == errno.EACCES
    assert errno_of(attach(peer)) == errno.EACCES


def test_half_done_afid_cannot_attach(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    start(peer)
    assert errno_of(attach(peer)) == errno.EACCES


def test_afid_is_bound_to_its_uname_and_aname(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    assert isinstance(peer.rpc(m.Twrite(AFID, 0, response(server.alice, start(peer)))),
                      m.Rwrite)
    assert errno_of(attach(peer, uname="bob")) == errno.EACCES
    assert errno_of(attach(peer, n_uname=0)) == errno.EACCES
    assert errno_of(attach(peer, aname="public")) == errno.EACCES
    assert isinstance(attach(peer), m.Rattach)


def test_attach_without_afid_to_a_key_only_policy_is_refused(server: AuthServer,
                                                             peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    assert errno_of(attach(peer, afid=m.NOFID)) == errno.EACCES
    assert isinstance(attach(peer, afid=m.NOFID, aname="public"), m.Rattach)
    assert sees(peer, PUBLIC_FILE) and not sees(peer, SECRET_FILE)


def test_a_plain_fid_is_not_an_afid(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    assert isinstance(attach(peer, afid=m.NOFID, aname="public", fid=5), m.Rattach)
    assert errno_of(attach(peer, afid=5)) == errno.EACCES
    assert errno_of(attach(peer, afid=1234)) == errno.EACCES


def test_afid_leads_nowhere_in_the_namespace(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    assert isinstance(peer.rpc(m.Twrite(AFID, 0, response(server.alice, start(peer)))),
                      m.Rwrite)
    assert errno_of(peer.rpc(m.Twalk(AFID, 50, (SECRET_FILE,)))) == errno.ENOENT
    # ".." of the afid's empty directory is itself: still nothing of any namespace
    assert isinstance(peer.rpc(m.Twalk(AFID, 50, ("..",))), m.Rwalk)
    assert errno_of(peer.rpc(m.Twalk(50, 51, (SECRET_FILE,)))) == errno.ENOENT
    assert errno_of(peer.rpc(m.Tlcreate(50, "x", 0o100, 0o644, 0))) in (errno.EROFS,
                                                                       errno.EACCES)


def test_afid_number_in_use_is_refused(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    start(peer)
    assert errno_of(peer.rpc(m.Tauth(AFID, "alice", "secret", 1000))) == errno.EBADF


def test_connection_keeps_the_proof_across_tversion(server: AuthServer,
                                                    peers: list[RawPeer]) -> None:
    """What ninep mount relies on: the helper authenticates and attaches, the kernel
    then sends Tversion and attaches with NOFID on the same connection."""
    peer = connect(server, peers)
    assert isinstance(peer.rpc(m.Twrite(AFID, 0, response(server.alice, start(peer)))),
                      m.Rwrite)
    assert isinstance(attach(peer), m.Rattach)
    assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
    assert isinstance(attach(peer, afid=m.NOFID), m.Rattach)
    assert sees(peer, SECRET_FILE)
    assert errno_of(attach(peer, afid=m.NOFID, n_uname=1001, fid=3)) == errno.EACCES
    other = connect(server, peers)
    assert errno_of(attach(other, afid=m.NOFID)) == errno.EACCES


def test_root_proof_covers_every_uid_of_the_connection(server: AuthServer,
                                                       peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    challenge = start(peer, uname="root", n_uname=0)
    assert isinstance(peer.rpc(m.Twrite(AFID, 0, response(server.alice, challenge))), m.Rwrite)
    assert isinstance(attach(peer, uname="root", n_uname=0), m.Rattach)
    assert isinstance(attach(peer, afid=m.NOFID, uname="", n_uname=1001, fid=2), m.Rattach)
    assert errno_of(attach(peer, afid=m.NOFID, uname="", aname="other", n_uname=1001,
                           fid=3)) == errno.EACCES


def test_server_without_key_policies_needs_no_auth(ninep_server: RunningServer) -> None:
    peer = RawPeer(("127.0.0.1", ninep_server.port))
    try:
        assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
        assert errno_of(peer.rpc(m.Tauth(AFID, "root", "", 0))) == errno.ENOENT
        assert isinstance(peer.rpc(m.Tattach(FID, m.NOFID, "root", "", 0)), m.Rattach)
    finally:
        peer.close()


def test_repeated_attaches_keep_one_proof(server: AuthServer, peers: list[RawPeer]) -> None:
    peer = connect(server, peers)
    assert isinstance(peer.rpc(m.Twrite(AFID, 0, response(server.alice, start(peer)))),
                      m.Rwrite)
    for fid in range(10, 20):
        assert isinstance(attach(peer, fid=fid), m.Rattach)
    session = next(iter(_sessions(server.running)))
    assert len(session.auth_proofs) == 1


def _sessions(running: RunningServer) -> list[object]:
    """The live sessions, found through the garbage collector (test introspection only)."""
    import gc

    from ninep.server.session import Session
    return [o for o in gc.get_objects() if isinstance(o, Session) and o.fids]


@settings(max_examples=60, deadline=None)
@given(data=st.one_of(st.binary(max_size=300),
                      st.binary(max_size=200).map(lambda b: b"ninep-auth1-resp" + b)))
def test_any_garbage_response_is_eacces(tmp_path_factory: pytest.TempPathFactory,
                                        data: bytes) -> None:
    import asyncio

    from ninep.server.auth import AuthExchange

    keys = tmp_path_factory.getbasetemp() / "no_keys"
    exchange = AuthExchange(Challenge(bytes(32), bytes(32), 1, 0, "u", "a"), keys)
    with pytest.raises(PermissionError):
        asyncio.run(exchange.write(0, data, "peer"))
    assert decode_status(exchange.read(0, 4096)) == Status(False, "")


def test_key_policy_without_a_keys_file_refuses_tauth() -> None:
    from ninep.backends.ram import RamBackend
    from ninep.vfs.namespace import Namespace
    from ninep.vfs.policy import Policy
    from tests.auth_policy import key_policy, key_rule
    from tests.conftest import start_server

    async def policy() -> Policy:
        ns = await Namespace.build([("/", RamBackend(), False)])
        return key_policy([key_rule(ns, None, "some-key")], None)

    running = start_server(policy)
    peer = RawPeer(("127.0.0.1", running.port))
    try:
        assert isinstance(peer.rpc(m.Tversion(65536, "9P2000.L"), tag=m.NOTAG), m.Rversion)
        assert errno_of(peer.rpc(m.Tauth(AFID, "u", "", 0))) == errno.EACCES
    finally:
        peer.close()
        running.stop()
