"""POSIX permission checks: owner, group, other, root."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import pytest

from ninep.backends.ram import RamBackend
from ninep.config.file import load_config
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Attr, Cred
from ninep.vfs.perms import (
    HOST_GROUPS,
    R_OK,
    W_OK,
    X_OK,
    Membership,
    check_access,
    check_sticky,
    may_access,
)
from ninep.vfs.policy import KEPT, REVOKED, AttachRequest, ConnectionContext, Peer, Policy, Rule


def attr(mode: int, uid: int = 1000, gid: int = 100) -> Attr:
    return Attr(ino=2, mode=mode, uid=uid, gid=gid, nlink=1, size=0, atime_ns=0, mtime_ns=0,
                ctime_ns=0)


OWNER, MEMBER, OTHER, ROOT = Cred(1000, 1000), Cred(2000, 2000, frozenset({100})), Cred(3000, 3000), Cred(0, 0)


@pytest.mark.parametrize("cred,want,allowed", [
    (OWNER, R_OK | W_OK, True), (OWNER, X_OK, False),
    (MEMBER, R_OK, True), (MEMBER, W_OK, False),
    (OTHER, R_OK, False), (ROOT, R_OK | W_OK, True),
])
def test_mode_0640(cred: Cred, want: int, allowed: bool) -> None:
    assert may_access(attr(stat.S_IFREG | 0o640), cred, want) is allowed


def test_owner_class_is_used_even_when_group_would_allow() -> None:
    # Linux picks the first matching class: an owner with 0070 cannot read
    assert not may_access(attr(stat.S_IFREG | 0o070, gid=1000), OWNER, R_OK)


def test_root_needs_some_execute_bit_on_files_but_not_directories() -> None:
    assert not may_access(attr(stat.S_IFREG | 0o600), ROOT, X_OK)
    assert may_access(attr(stat.S_IFREG | 0o100), ROOT, X_OK)
    assert may_access(attr(stat.S_IFDIR | 0o000), ROOT, X_OK)


def test_check_access_raises_eacces() -> None:
    with pytest.raises(OSError) as info:
        check_access(attr(stat.S_IFREG | 0o600), OTHER, R_OK)
    assert info.value.errno == errno.EACCES


def test_sticky_directory_protects_other_users_files() -> None:
    tmp = attr(stat.S_IFDIR | 0o1777, uid=0, gid=0)
    theirs = attr(stat.S_IFREG | 0o666, uid=3000)
    with pytest.raises(OSError) as info:
        check_sticky(tmp, theirs, OWNER)
    assert info.value.errno == errno.EPERM
    check_sticky(tmp, theirs, OTHER)  # the file's owner may
    check_sticky(tmp, theirs, ROOT)


# --- group models (issue 10) -----------------------------------------------------

CLIENT = Membership(client=True)
STRANGER = Cred(3000, 3000)  # in no group the server knows of


def test_the_host_model_grants_a_stranger_only_the_other_class() -> None:
    assert not may_access(attr(stat.S_IFREG | 0o060), STRANGER, R_OK)
    assert not HOST_GROUPS.member(STRANGER, 100)


def test_the_client_model_grants_the_group_or_the_other_class() -> None:
    assert may_access(attr(stat.S_IFREG | 0o060), STRANGER, R_OK | W_OK, CLIENT)
    assert may_access(attr(stat.S_IFREG | 0o604), STRANGER, R_OK, CLIENT)
    assert not may_access(attr(stat.S_IFREG | 0o040), STRANGER, W_OK, CLIENT)
    assert not may_access(attr(stat.S_IFREG | 0o460), OWNER, W_OK, CLIENT)  # owner class first
    assert CLIENT.member(STRANGER, 100)


def test_the_client_model_never_trusts_the_anonymous_gid_of_an_id_map() -> None:
    mapped = Membership(client=True, anonymous=65534)
    assert not mapped.member(STRANGER, 65534)
    assert not may_access(attr(stat.S_IFREG | 0o060, gid=65534), STRANGER, R_OK, mapped)
    assert mapped.member(Cred(3000, 65534), 65534)  # its own group stays its own


def test_the_groups_key_of_a_policy(tmp_path: Path) -> None:
    def policy(groups: str) -> str:
        return ('[namespaces.n]\nmounts = [{ path = "/", backend = "ram" }]\n'
                f'[[policy]]\nnamespace = "n"\ngroups = "{groups}"\n')

    (tmp_path / "a.toml").write_text(policy("client"))
    assert load_config(tmp_path / "a.toml").policies[0].groups == "client"
    (tmp_path / "b.toml").write_text(policy("everyone"))
    with pytest.raises(ValueError, match="groups"):
        load_config(tmp_path / "b.toml")


async def test_a_client_groups_policy_gives_its_attaches_that_model() -> None:
    ns = await Namespace.build([("/", RamBackend(), False)])
    peer = Peer("tcp", "127.0.0.1:1")
    for groups, client in (("host", False), ("client", True)):
        chosen = await Policy([Rule(ns, name="r", groups=groups)]).attach(
            AttachRequest(peer, "", "", 3000, STRANGER), ConnectionContext())
        assert chosen.namespace.groups.client is client


async def test_a_reload_that_takes_groups_from_the_host_again_revokes_client_attaches() -> None:
    ns = await Namespace.build([("/", RamBackend(), False)])
    request = AttachRequest(Peer("tcp", "127.0.0.1:1"), "", "", 3000, STRANGER)
    trusted = Rule(ns, name="r", groups="client")
    assert Policy([Rule(ns, name="r")]).review(request, trusted, False).verdict == REVOKED
    assert Policy([trusted]).review(request, trusted, False).verdict == KEPT
    assert Policy([trusted]).review(request, Rule(ns, name="r"), False).verdict == KEPT
