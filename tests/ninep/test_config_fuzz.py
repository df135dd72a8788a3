"""Whatever a TOML file holds, validation ends in a Config or one BackendConfigError line,
never another exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ninep.backends.registry import BackendConfigError
from ninep.config.file import Config, parse_config

KEYS = ["server", "auth", "listen", "namespaces", "policy", "mounts", "path", "backend",
        "source", "options", "read_only", "scope", "kind", "address", "mode", "cert", "key",
        "name", "namespace", "match", "transport", "peer_uid", "n_uname", "aname", "squash",
        "uid_map", "client", "count", "limits", "msize", "cert_sha256", "main", "ram",
        "inline", "tcp", "unix", "stdio", "/", "/a", "{uname}", "1-2", "10.0.0.0/8"]
scalars = st.one_of(st.sampled_from(KEYS), st.integers(-2, 2**33), st.booleans(),
                    st.floats(allow_nan=False), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12)
documents = st.dictionaries(st.sampled_from(["server", "auth", "listen", "namespaces",
                                             "policy"]), values, max_size=5)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_document_is_a_config_or_one_clear_error(doc: dict[str, object]) -> None:
    try:
        config = parse_config(doc, Path("fuzz.toml"))
    except BackendConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ") and "\n" not in message
    else:
        assert isinstance(config, Config)


def tables(keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


MOUNT = ["path", "backend", "source", "options", "read_only", "scope"]
POLICY = ["name", "namespace", "match", "read_only", "squash", "anon_uid", "uid_map", "gid_map",
          "limits"]
MATCH = ["address", "transport", "peer_uid", "peer_gid", "cert_cn", "cert_san", "cert_sha256",
         "key", "uname", "n_uname", "aname"]
LISTEN = ["kind", "address", "path", "mode", "cert", "key", "client_ca", "client_cert", "name"]
shaped = st.fixed_dictionaries({
    "namespaces": st.dictionaries(st.sampled_from(["main", "b"]), st.fixed_dictionaries(
        {"mounts": st.lists(tables(MOUNT), max_size=3)}), max_size=2),
    "policy": st.lists(st.tuples(tables(POLICY), tables(MATCH)).map(
        lambda pm: {**pm[0], "match": pm[1]}), max_size=3),
    "listen": st.lists(tables(LISTEN), max_size=2),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped)
def test_any_shaped_document_is_a_config_or_one_clear_error(doc: dict[str, object]) -> None:
    test_any_document_is_a_config_or_one_clear_error.hypothesis.inner_test(doc)  # type: ignore[attr-defined]
