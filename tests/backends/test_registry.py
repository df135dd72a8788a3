"""Tests for backends/registry.py: --mount parsing, option helpers, one place for config errors."""

from __future__ import annotations

import sys
import types

import pytest

from ninep.backends.ram import RamBackend
from ninep.backends.registry import (
    KINDS,
    BackendConfigError,
    BackendKind,
    MountSpec,
    Option,
    check_mount,
    open_backend,
    option_bool,
    option_int,
    option_str,
    parse_mount,
)


def test_parse_mount_kind_source_options_and_ro() -> None:
    spec = parse_mount("/data=tar:/srv/a:b.tar,lenient=true,ro")
    assert (spec.path, spec.kind, spec.source, spec.read_only) == ("/data", "tar", "/srv/a:b.tar",
                                                                   True)
    assert dict(spec.options) == {"lenient": "true"}
    assert parse_mount("/=ram").options == {} and not parse_mount("/=ram,rw").read_only


@pytest.mark.parametrize(("text", "message"), [
    ("data=ram", "expected /PATH=KIND"),
    ("/data", "expected /PATH=KIND"),
    ("/x=nosuch:/a", "unknown backend 'nosuch'"),
    ("/x=ram,,ro", "empty option"),
])
def test_parse_mount_errors_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        parse_mount(text)
    assert repr(text) in str(exc.value)


async def test_open_backend_checks_source_and_leftover_options() -> None:
    backend = await open_backend("ram", "", {"size": "1M", "inodes": "10"})
    assert isinstance(backend, RamBackend)
    assert (backend.size_limit, backend.inode_limit) == (1 << 20, 10)
    with pytest.raises(BackendConfigError, match="here: backend 'ram' takes no source"):
        await open_backend("ram", "/x", where="here")
    with pytest.raises(BackendConfigError, match="needs a source"):
        await open_backend("passthrough", "")
    with pytest.raises(BackendConfigError, match="unknown option 'colour' for backend 'ram'"):
        await open_backend("ram", "", {"colour": "blue"})
    with pytest.raises(BackendConfigError, match="unknown backend 'nfs'"):
        await open_backend("nfs")
    with pytest.raises(BackendConfigError, match=r"option mode='9': expected octal"):
        await open_backend("ram", "", {"mode": "9"})


def test_option_helpers_convert_and_complain() -> None:
    options: dict[str, object] = {"n": "4K", "b": "off", "s": "x", "i": 7, "t": True}
    assert option_int(options, "n", None) == 4096
    assert option_int(options, "i", None) == 7
    assert option_bool(options, "b", True) is False
    assert option_bool(options, "t", False) is True
    assert option_str(options, "s", "", choices=("x", "y")) == "x"
    assert options == {}
    assert option_int(options, "absent", 3) == 3
    with pytest.raises(BackendConfigError, match="expected an integer"):
        option_int({"n": "lots"}, "n", None)
    with pytest.raises(BackendConfigError, match="must be at least 1"):
        option_int({"n": 0}, "n", None, minimum=1)
    with pytest.raises(BackendConfigError, match="expected true or false"):
        option_bool({"b": "maybe"}, "b", False)
    with pytest.raises(BackendConfigError, match="expected one of x, y"):
        option_str({"s": "z"}, "s", "x", choices=("x", "y"))
    # a default declared in KINDS is filled in by the registry, not repeated by factories
    with pytest.raises(BackendConfigError, match="option lenient: missing"):
        option_bool({}, "lenient")


def test_every_kind_declares_its_options_and_source_once() -> None:
    """The schema is the one list: the config file and --mount both check it."""
    assert [o.name for o in KINDS["ram"].options] == ["size", "inodes", "mode"]
    entry, checked = check_mount("tar", "/a.tar", {"lenient": "yes"})
    assert entry is KINDS["tar"] and checked == {"lenient": True, "tmpdir": ""}
    _, checked = check_mount("ram", "", {"mode": "{uid}", "size": "2K"}, deferred={"mode"})
    assert checked == {"size": 2048}  # a deferred value is checked once expanded
    with pytest.raises(BackendConfigError) as caught:
        check_mount("ram", "", {"colour": "{uname}"}, deferred={"colour"})
    assert caught.value.key == "options.colour" and "known: size, inodes, mode" in str(caught.value)
    for kind, source, options, key in [("floppy", "", {}, "backend"), ("tar", "", {}, "source"),
                                       ("ram", "", {"inodes": 0}, "options.inodes"),
                                       ("ram", "", {"mode": 755}, "options.mode"),
                                       ("overlay", "", {"lower": "nfs:/x"}, "options.lower")]:
        with pytest.raises(BackendConfigError) as caught:
            check_mount(kind, source, options)
        assert caught.value.key == key, (kind, options)


def test_parse_mount_checks_the_options_before_anything_opens() -> None:
    with pytest.raises(BackendConfigError, match=r"--mount '/x=tar:/a.tar,lenient=maybe': "
                                                 r"option lenient='maybe': expected true"):
        parse_mount("/x=tar:/a.tar,lenient=maybe")
    with pytest.raises(BackendConfigError, match="takes no source"):
        parse_mount("/x=ram:/somewhere")
    spec = parse_mount("/x=ram,size=1M")
    assert isinstance(spec, MountSpec) and spec.describe() == "ram, size='1M'"
    assert spec.where == "--mount '/x=ram,size=1M'" and not spec.single_file
    assert parse_mount("/f=zero").single_file


async def test_a_new_kind_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry in KINDS is all a kind needs: --mount and config files check its
    source and options against it, and its factory gets them converted, defaults in."""
    opened: list[tuple[str, dict[str, object], bool]] = []

    async def open_echo(source: str, options: dict[str, object], read_only: bool) -> RamBackend:
        opened.append((source, dict(options), read_only))
        return RamBackend()

    module = types.ModuleType("echo_kind")
    module.open_echo = open_echo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "echo_kind", module)
    monkeypatch.setitem(KINDS, "echo", BackendKind(
        "echo", "echo_kind:open_echo", "optional",
        (Option("depth", "integer", 3, minimum=1), Option("loud", "boolean", False))))
    await (await parse_mount("/e=echo:hi,depth=2K,ro").open()).close()
    await (await open_backend("echo")).close()
    assert opened == [("hi", {"depth": 2048, "loud": False}, True),
                      ("", {"depth": 3, "loud": False}, False)]
    with pytest.raises(BackendConfigError, match="option depth=0: must be at least 1"):
        parse_mount("/e=echo,depth=0")
    with pytest.raises(BackendConfigError, match=r"unknown option 'x' .*known: depth, loud"):
        parse_mount("/e=echo,x=1")
