"""vfs/policy.py and vfs/idmap.py: matching, specificity, refusals, and id mapping in vfs/."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging

import pytest

from ninep.backends.ram import RamBackend
from ninep.vfs.idmap import IdMap, IdRange
from ninep.vfs.namespace import Namespace
from ninep.vfs.node import Cred, SetAttr
from ninep.vfs.policy import (
    AttachRequest,
    CertIdentity,
    ConnectionContext,
    Limits,
    Match,
    Peer,
    Policy,
    Rule,
)

NOBODY = 65534
TCP = Peer("tcp", "10.1.2.3:4000")
UNIX = Peer("unix", "local", uid=1000, gid=100, pid=1)
ALICE = Peer("tls", "[::1]:5000", cert=CertIdentity("alice", ("alice.example",), "ab" * 32))


def request(peer: Peer = TCP, uname: str = "u", aname: str = "", n_uname: int = 1000,
            keys: frozenset[str] = frozenset()) -> AttachRequest:
    return AttachRequest(peer, uname, aname, n_uname, Cred(n_uname, n_uname), keys)


def ns(name: str) -> Namespace:
    return Namespace(name)


@pytest.mark.parametrize(("match", "req", "missed"), [
    (Match(), request(), None),
    (Match(transport=frozenset({"unix"})), request(), "transport"),
    (Match(address=(ipaddress.ip_network("10.0.0.0/8"),)), request(), None),
    (Match(address=(ipaddress.ip_network("10.0.0.0/16"),)), request(), "address"),
    (Match(address=(ipaddress.ip_network("::1/128"),)), request(ALICE), None),
    (Match(address=(ipaddress.ip_network("0.0.0.0/0"),)), request(UNIX), "address"),
    (Match(peer_uid=(range(1000, 1001),)), request(UNIX), None),
    (Match(peer_uid=(range(0, 1),)), request(UNIX), "peer_uid"),
    (Match(peer_uid=(range(0, 2000),)), request(TCP), "peer_uid"),  # no SO_PEERCRED on TCP
    (Match(peer_gid=(range(100, 101),)), request(UNIX), None),
    (Match(cert_cn=frozenset({"alice"})), request(ALICE), None),
    (Match(cert_cn=frozenset({"alice"})), request(TCP), "cert_cn"),
    (Match(cert_san=frozenset({"alice.example"})), request(ALICE), None),
    (Match(cert_sha256=frozenset({"cd" * 32})), request(ALICE), "cert_sha256"),
    (Match(key=frozenset({"SHA256:k"})), request(keys=frozenset({"SHA256:k", "me@host"})), None),
    (Match(key=frozenset({"SHA256:k"})), request(), "key"),
    (Match(uname=frozenset({"u"})), request(), None),
    (Match(n_uname=(range(0, 1),)), request(n_uname=1000), "n_uname"),
    (Match(aname=frozenset({"docs"})), request(aname="/docs/"), None),
    (Match(aname=frozenset({"docs"})), request(aname="doc"), "aname"),
])
def test_each_match_key(match: Match, req: AttachRequest, missed: str | None) -> None:
    assert match.failed_key(req) == missed


def test_n_uname_absent_matches_the_uid_uname_resolves_to() -> None:
    req = AttachRequest(TCP, "u", "", 0xFFFFFFFF, Cred(7, 7))
    assert Match(n_uname=(range(7, 8),)).failed_key(req) is None


def test_the_most_specific_rule_wins_and_ties_go_to_the_first() -> None:
    policy = Policy([
        Rule(ns("anyone"), name="anyone"),
        Rule(ns("tcp"), name="tcp", match=Match(transport=frozenset({"tcp"}))),
        Rule(ns("tcp-docs"), name="tcp-docs",
             match=Match(transport=frozenset({"tcp"}), aname=frozenset({"docs"}))),
        Rule(ns("docs"), name="docs", match=Match(aname=frozenset({"docs"}))),
    ])
    assert policy.choose(request(aname="docs")).namespace.name == "tcp-docs"
    assert policy.choose(request(aname="other")).namespace.name == "tcp"  # before "docs"
    assert policy.choose(request(UNIX, aname="docs")).namespace.name == "docs"
    assert policy.choose(request(UNIX)).namespace.name == "anyone"


def test_no_match_is_eacces_with_a_log_line_saying_who_and_why(
        caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy([Rule(ns("a"), name="only-unix", match=Match(transport=frozenset({"unix"})))])
    with caplog.at_level(logging.WARNING), pytest.raises(OSError) as caught:
        policy.choose(request(uname="mallory", aname="x"))
    assert caught.value.errno == errno.EACCES
    line = caplog.records[-1].getMessage()
    assert "mallory" in line and "10.1.2.3" in line and "only-unix: transport" in line
    with pytest.raises(OSError):
        Policy([]).choose(request())


def test_wants_auth_only_when_a_rule_matches_on_a_key() -> None:
    assert not Policy([Rule(ns("a"))]).wants_auth
    assert Policy([Rule(ns("a")), Rule(ns("b"), match=Match(key=frozenset({"k"})))]).wants_auth


def test_msize_cap_is_the_largest_any_candidate_rule_allows() -> None:
    policy = Policy([
        Rule(ns("a"), match=Match(transport=frozenset({"tcp"})), limits=Limits(max_msize=8192)),
        Rule(ns("b"), match=Match(transport=frozenset({"tcp"}), aname=frozenset({"big"})),
             limits=Limits(max_msize=65536)),
        Rule(ns("c"), match=Match(transport=frozenset({"unix"}))),
    ])
    assert policy.msize_cap(TCP, 1 << 20) == 65536
    assert policy.msize_cap(UNIX, 1 << 20) == 1 << 20
    assert Policy([Rule(ns("a"), limits=Limits(max_msize=9000))]).msize_cap(TCP, 1 << 20) == 9000


# --- id mapping ----------------------------------------------------------------

def test_squash_root_and_all() -> None:
    root = IdMap("root", 9, 8)
    assert root.cred(Cred(0, 0, frozenset({0, 5}))) == Cred(9, 8, frozenset({5}))
    assert root.cred(Cred(1000, 100)) == Cred(1000, 100)
    every = IdMap("all")
    assert every.cred(Cred(1000, 100, frozenset({5}))) == Cred(NOBODY, NOBODY, frozenset())
    assert every.setattr_in(SetAttr(uid=0, gid=5)) == SetAttr(uid=NOBODY, gid=NOBODY)


def test_ranges_map_both_ways_and_unlisted_ids_become_anonymous() -> None:
    mapped = IdMap(uids=(IdRange(1000, 501000, 100),), gids=(IdRange(1000, 501000, 100),))
    assert mapped.cred(Cred(1005, 1005, frozenset({1001, 27}))) == Cred(
        501005, 501005, frozenset({501001}))
    assert mapped.uid_in(0) == NOBODY and mapped.uid_in(1100) == NOBODY
    assert mapped.uid_out(501099) == 1099 and mapped.uid_out(0) == NOBODY
    assert IdMap().identity and not mapped.identity


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_a_view_enforces_read_only_and_maps_ids_before_the_backend() -> None:
    async def scenario() -> None:
        ram = RamBackend(root_mode=0o1777)
        base = await Namespace.build([("/", ram, False)], name="n")
        ro = base.view(read_only=True)
        for attempt in (ro.mkdir(ro.root(), "d", 0o755, 0, Cred(0, 0)),
                        ro.create(ro.root(), "f", 1, 0o644, 0, Cred(0, 0)),
                        ro.setattr(ro.root(), SetAttr(mode=0o777), Cred(0, 0)),
                        ro.xattr_set(ro.root(), "user.a", b"1", 0, Cred(0, 0))):
            with pytest.raises(OSError) as caught:
                await attempt
            assert caught.value.errno == errno.EROFS
        assert base.view() is base and not base.read_only  # the shared tree is untouched
        idmap = IdMap(uids=(IdRange(1000, 501000, 10),), gids=(IdRange(1000, 501000, 10),))
        view = base.view(idmap=idmap)
        cred = idmap.cred(Cred(1001, 1001))
        loc = await view.mkdir(view.root(), "d", 0o755, 1001, cred)
        raw = await loc.node.getattr()
        assert (raw.uid, raw.gid) == (501001, 501001)
        shown = await view.getattr(loc)
        assert (shown.uid, shown.gid) == (1001, 1001)
    run(scenario())


def test_a_rule_gives_a_selection_with_the_mapped_cred_and_its_limits() -> None:
    async def scenario() -> None:
        base = await Namespace.build([("/", RamBackend(), False)], name="n")
        rule = Rule(base, name="r", read_only=True, idmap=IdMap("all", 5, 6),
                    limits=Limits(max_fids=3))
        policy = Policy([rule])
        context = ConnectionContext()
        chosen = await policy.attach(request(), context)
        assert chosen.cred == Cred(5, 6) and chosen.limits.max_fids == 3
        assert chosen.namespace.read_only and chosen.namespace.idmap == rule.idmap
        assert policy.users == 1
        policy.retire()
        await context.close()
        assert policy.users == 0
    run(scenario())


# --- what a reload leaves an attach (Policy.review) ---------------------------------

class Declared:
    """A namespace provider as a config file declares one: a name and its mounts."""

    def __init__(self, name: str, **mounts: bool) -> None:
        self.name = self.identity = name
        self.mount_grants = {"/" + path.replace("_", "/"): ro for path, ro in mounts.items()}

    async def namespace_for(self, request: AttachRequest, cred: Cred,
                            context: ConnectionContext) -> Namespace:
        raise AssertionError("a review builds nothing")


def reviewed(before: Rule, after: Rule, read_only: bool = False) -> tuple[str, str]:
    review = Policy([after]).review(request(), before, read_only)
    return review.verdict, review.reason


def test_a_review_keeps_narrows_or_revokes() -> None:
    data = Declared("data", home=False, pub=False)
    rule = Rule(data, name="p")
    assert reviewed(rule, Rule(Declared("data", home=False, pub=False), name="p")) == ("kept", "")
    # the same name with other sources is the same namespace: content changes wait
    assert reviewed(rule, Rule(Declared("data", home=False, pub=False, extra=False)))[0] == "kept"
    assert reviewed(rule, Rule(data, name="q", read_only=True)) == (
        "read-only", "policy 'q' is read-only now")
    assert reviewed(rule, Rule(Declared("data", home=False, pub=True), name="q")) == (
        "read-only", "namespace 'data' mounts /pub read-only now")
    assert reviewed(rule, Rule(Declared("data", home=False), name="q")) == (
        "revoked", "namespace 'data' no longer mounts /pub")
    assert reviewed(rule, Rule(Declared("other", home=False, pub=False), name="q")) == (
        "revoked", "policy 'q' gives it namespace 'other' now")
    assert reviewed(rule, Rule(data, name="q", idmap=IdMap(squash="all")))[0] == "revoked"
    assert reviewed(rule, Rule(data, match=Match(aname=frozenset({"x"})))) == (
        "revoked", "no policy matches it now")
    # rights that grow are not given to an attach made before
    assert reviewed(Rule(data, read_only=True), Rule(data), read_only=True)[0] == "kept"


def test_policies_open_to_the_network() -> None:
    loopback = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    policy = Policy([
        Rule(ns("a"), name="anyone"),
        Rule(ns("b"), name="this host", match=Match(address=loopback)),
        Rule(ns("c"), name="lan", match=Match(address=(ipaddress.ip_network("10.0.0.0/8"),))),
        Rule(ns("d"), name="keys", match=Match(key=frozenset({"k"}))),
        Rule(ns("e"), name="certs", match=Match(cert_cn=frozenset({"alice"}))),
        Rule(ns("f"), name="root", match=Match(transport=frozenset({"unix"}),
                                               peer_uid=(range(0, 1),))),
        Rule(ns("g"), name="tls only", match=Match(transport=frozenset({"tls"}))),
    ])
    assert [r.name for r in policy.open_rules("tcp")] == ["lan", "anyone"]
    assert [r.name for r in policy.open_rules("tls")] == ["lan", "tls only", "anyone"]
