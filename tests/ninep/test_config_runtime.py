"""ninep/config/runtime.py: placeholders, shared and connection-scoped instances, reloads."""

from __future__ import annotations

import asyncio
import errno
import textwrap
from pathlib import Path

import pytest

from ninep.backends.ram import RamBackend
from ninep.config.file import load_config
from ninep.config.runtime import BackendPool, build_policy, placeholder_values
from ninep.vfs.node import Cred
from ninep.vfs.policy import AttachRequest, ConnectionContext, Peer, Policy

PEER = Peer("tcp", "127.0.0.1:1")
CONFIG = textwrap.dedent("""
    [namespaces.per_user]
    mounts = [{ path = "/", backend = "ram" },
              { path = "/me", backend = "inline", source = "{uname} {uid} {gid} {aname} {{x}}" },
              { path = "/to", backend = "symlink", source = "/home/{uname}" }]
    [namespaces.private]
    mounts = [{ path = "/", backend = "ram", scope = "connection" }]
    [[policy]]
    namespace = "per_user"
    [[policy]]
    namespace = "private"
    match = { aname = "private" }
""")


def req(uname: str = "alice", aname: str = "home", uid: int = 1000) -> AttachRequest:
    return AttachRequest(PEER, uname, aname, uid, Cred(uid, uid + 1))


async def policy_from(tmp_path: Path, text: str = CONFIG,
                      previous: Policy | None = None) -> Policy:
    path = tmp_path / "ninep.toml"
    path.write_text(text)
    return await build_policy(load_config(path), previous)


async def read(policy: Policy, request: AttachRequest, context: ConnectionContext,
               name: str) -> bytes:
    chosen = await policy.attach(request, context)
    loc = await chosen.namespace.walk(chosen.namespace.root(), name, chosen.cred)
    handle = await chosen.namespace.open(loc, 0, chosen.cred)
    return bytes(await handle.read(0, 4096))


@pytest.mark.parametrize("uname", ["..", ".", "a/b", "", "x\0y"])
def test_a_placeholder_that_could_escape_is_eacces(uname: str) -> None:
    with pytest.raises(OSError) as caught:
        placeholder_values(frozenset({"uname"}), req(uname, uid=0xFFFFFFFF), Cred(1, 1))
    assert caught.value.errno == errno.EACCES


def test_aname_with_a_slash_is_refused_and_uname_falls_back_to_passwd() -> None:
    with pytest.raises(OSError):
        placeholder_values(frozenset({"aname"}), req(aname="a/../b"), Cred(1, 1))
    assert placeholder_values(frozenset({"uname"}), req("", uid=0), Cred(0, 0)) == (
        ("uname", "root"),)


def test_placeholders_give_each_identity_its_own_instances(tmp_path: Path) -> None:
    async def scenario() -> None:
        policy = await policy_from(tmp_path)
        context = ConnectionContext()
        assert await read(policy, req("alice"), context, "me") == b"alice 1000 1001 home {x}\n"
        assert await read(policy, req("bob", uid=1001), context, "me") == (
            b"bob 1001 1002 home {x}\n")
        first = await policy.attach(req("alice"), context)
        again = await policy.attach(req("alice"), ConnectionContext())
        assert first.namespace is again.namespace  # cached per expanded values
        link = await first.namespace.walk(first.namespace.root(), "to", first.cred)
        assert await first.namespace.readlink(link, first.cred) == "/home/alice"
        with pytest.raises(OSError) as caught:
            await policy.attach(req("../etc"), context)
        assert caught.value.errno == errno.EACCES
        await policy.close()
    asyncio.run(scenario())


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[RamBackend]:
    """Every RamBackend closed during the test, in order."""
    seen: list[RamBackend] = []
    original = RamBackend.close

    async def close(self: RamBackend) -> None:
        seen.append(self)
        await original(self)
    monkeypatch.setattr(RamBackend, "close", close)
    return seen


def test_connection_scope_is_private_and_closed_with_the_connection(
        tmp_path: Path, closed: list[RamBackend]) -> None:
    async def scenario() -> None:
        policy = await policy_from(tmp_path)
        closed.clear()  # the start-up probe of the connection-scoped mount
        one, two = ConnectionContext(), ConnectionContext()
        a = await policy.attach(req(aname="private"), one)
        b = await policy.attach(req(aname="private"), two)
        assert a.namespace.root().mount.backend is not b.namespace.root().mount.backend
        again = await policy.attach(req("other", aname="private"), one)
        assert again.namespace.root().mount.backend is a.namespace.root().mount.backend
        backend = a.namespace.root().mount.backend
        await one.close()
        assert closed == [backend]
        await two.close()
        await policy.close()
    asyncio.run(scenario())


def test_a_reload_keeps_identical_shared_instances_and_a_failed_one_gives_them_back(
        tmp_path: Path, closed: list[RamBackend]) -> None:
    async def scenario() -> None:
        old = await policy_from(tmp_path)
        context = ConnectionContext()
        before = (await old.attach(req(), context)).namespace.mounts[0].backend
        new = await policy_from(tmp_path, CONFIG, previous=old)
        assert isinstance(new.resources, BackendPool)
        new.resources.commit()
        after = (await new.attach(req(), ConnectionContext())).namespace.mounts[0].backend
        assert after is before
        old.retire()
        await context.close()  # the old policy's last user: it closes what it still owns
        assert before not in closed
        broken = CONFIG + '[namespaces.bad]\nmounts = [{ path = "/", backend = "ram", options = { x = 1 } }]\n'
        with pytest.raises(ValueError, match="unknown option 'x'"):
            await policy_from(tmp_path, broken, previous=new)
        assert isinstance(new.resources, BackendPool)
        assert any(b is before for b in new.resources.instances.values())
        await new.close()
        assert before in closed
    asyncio.run(scenario())


def test_inventing_unames_cannot_grow_the_server_without_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ninep.config.runtime as runtime
    monkeypatch.setattr(runtime, "MAX_EXPANSIONS", 3)

    async def scenario() -> None:
        policy = await policy_from(tmp_path)
        context = ConnectionContext()
        for name in ("a", "b", "c"):
            await policy.attach(req(name), context)
        await policy.attach(req("a"), context)  # a known set of values is no new cost
        with pytest.raises(OSError) as caught:
            await policy.attach(req("d"), context)
        assert caught.value.errno == errno.EACCES
        await policy.close()
    asyncio.run(scenario())


def test_two_namespaces_declaring_a_ram_disk_get_two_disks(tmp_path: Path) -> None:
    text = textwrap.dedent("""
        [namespaces.a]
        mounts = [{ path = "/", backend = "ram" }]
        [namespaces.b]
        mounts = [{ path = "/", backend = "ram" }]
        [[policy]]
        namespace = "a"
        match = { aname = "a" }
        [[policy]]
        namespace = "b"
        match = { aname = "b" }
    """)

    async def scenario() -> None:
        policy = await policy_from(tmp_path, text)
        context = ConnectionContext()
        a = await policy.attach(req(aname="a"), context)
        b = await policy.attach(req(aname="b"), context)
        assert a.namespace.mounts[0].backend is not b.namespace.mounts[0].backend
        await policy.close()
    asyncio.run(scenario())
