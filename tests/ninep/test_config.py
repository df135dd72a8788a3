"""ninep/config/file.py: a TOML file validated into frozen dataclasses; each error names file,
table and key; check-config prints the namespaces."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ninep.backends.registry import BackendConfigError
from ninep.config.file import Config, load_config
from ninep.vfs.idmap import IdRange

GOOD = textwrap.dedent("""
    [server]
    msize = 65536
    max_fids = 1000

    [auth]
    authorized_keys = "keys"

    [[listen]]
    kind = "tcp"
    address = "127.0.0.1:5640"

    [[listen]]
    kind = "unix"
    path = "run/9p.sock"
    mode = "0660"

    [namespaces.home]
    mounts = [
      { path = "/", backend = "ram", options = { size = "16M" } },
      { path = "/etc/motd", backend = "inline", source = "hello {uname}" },
      { path = "/tmp", backend = "ram", scope = "connection" },
      { path = "/deep/er/link", backend = "symlink", source = "../../tmp" },
    ]

    [[policy]]
    name = "users"
    namespace = "home"
    squash = "root"
    limits = { max_fids = 10, msize = 8192 }
    [policy.match]
    transport = ["tcp", "unix"]
    n_uname = ["1000-1999", 0]
    address = "10.0.0.0/8"
    key = "SHA256:abc"

    [[policy]]
    namespace = "home"
    read_only = true
    uid_map = [{ client = 0, server = 100000, count = 65536 }]
""")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ninep.toml"
    path.write_text(text)
    return path


def test_a_good_file_becomes_frozen_dataclasses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert isinstance(config, Config)
    assert config.limits.max_msize == 65536 and config.limits.max_fids == 1000
    assert config.authorized_keys == tmp_path / "keys"  # relative to the file
    tcp, unix = config.listeners
    assert (tcp.kind, tcp.host, tcp.port) == ("tcp", "127.0.0.1", 5640)
    assert (unix.path, unix.mode) == (str(tmp_path / "run/9p.sock"), 0o660)
    mounts = config.namespaces["home"].mounts
    assert [m.path for m in mounts] == ["/", "/etc/motd", "/tmp", "/deep/er/link"]
    assert mounts[1].placeholders == {"uname"} and mounts[2].scope == "connection"
    users, second = config.policies
    assert users.match.n_uname == (range(1000, 2000), range(0, 1))
    assert users.match.transport == {"tcp", "unix"} and users.match.key == {"SHA256:abc"}
    assert users.idmap.squash == "root" and users.limits.max_msize == 8192
    assert second.name == "#2" and second.read_only
    assert second.idmap.uids == (IdRange(0, 100000, 65536),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.policies[0].name = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.namespaces["x"] = config.namespaces["home"]  # type: ignore[index]


BASE = '[namespaces.n]\nmounts = [{ path = "/", backend = "ram" }]\n'


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("bogus = 1\n" + BASE + "[[policy]]\nnamespace = 'n'\n", "top level: bogus", "unknown key"),
    (BASE, "top level: policy", "no [[policy]]"),
    (BASE + "[[policy]]\nnamespace = 'm'\n", "[[policy]] #1: namespace", "no namespace 'm'"),
    (BASE + "[[policy]]\nnamespace = 'n'\nmatch = { colour = 'red' }\n",
     "[[policy]] #1 match: colour", "unknown key"),
    (BASE + "[[policy]]\nname = 'p'\nnamespace = 'n'\nmatch = { transport = 'smoke' }\n",
     "[[policy]] 'p' match: transport", "'smoke' is not one of"),
    (BASE + "[[policy]]\nnamespace = 'n'\nmatch = { address = '10.0.0.300/8' }\n",
     "match: address", "expected an address or CIDR"),
    (BASE + "[[policy]]\nnamespace = 'n'\nmatch = { peer_uid = '9-1' }\n",
     "match: peer_uid", "FIRST-LAST"),
    (BASE + "[[policy]]\nnamespace = 'n'\nmatch = { aname = [] }\n",
     "match: aname", "empty list"),
    (BASE + "[[policy]]\nnamespace = 'n'\nmatch = { cert_sha256 = 'abc' }\n",
     "match: cert_sha256", "64 hex digits"),
    (BASE + "[[policy]]\nnamespace = 'n'\nsquash = 'some'\n", "[[policy]] #1: squash",
     "not one of none, root, all"),
    (BASE + "[[policy]]\nnamespace = 'n'\nuid_map = [{ client = 0, server = 1, count = 10 },"
            " { client = 5, server = 100 }]\n", "uid_map[1]: client", "overlaps"),
    (BASE + "[[policy]]\nnamespace = 'n'\nlimits = { msize = 100 }\n", "limits: msize",
     "out of range"),
    (BASE + "[[policy]]\nnamespace = 'n'\nread_only = 'yes'\n", "read_only",
     "expected true or false"),
    ('[namespaces.n]\nmounts = [{ path = "x", backend = "ram" }]\n[[policy]]\nnamespace="n"\n',
     "[namespaces.n] mounts[0]: path", "absolute path"),
    ('[namespaces.n]\nmounts = [{ path = "/a/../b", backend = "ram" }]\n[[policy]]\n'
     'namespace="n"\n', "mounts[0]: path", "without . or .."),
    ('[namespaces.n]\nmounts = [{ path = "/", backend = "floppy" }]\n[[policy]]\nnamespace="n"\n',
     "mounts[0]: backend", "unknown backend 'floppy'"),
    ('[namespaces.n]\nmounts = [{ path = "/", backend = "tar" }]\n[[policy]]\nnamespace="n"\n',
     "mounts[0]: source", "needs a source"),
    ('[namespaces.n]\nmounts = [{ path = "/", backend = "ram", source = "x" }]\n[[policy]]\n'
     'namespace="n"\n', "mounts[0]: source", "takes no source"),
    ('[namespaces.n]\nmounts = [{ path = "/", backend = "inline", source = "{user}" }]\n'
     '[[policy]]\nnamespace="n"\n', "mounts[0]: source", "unknown placeholder {user}"),
    ('[namespaces.n]\nmounts = [{ path = "/", backend = "ram", scope = "global" }]\n'
     '[[policy]]\nnamespace="n"\n', "mounts[0]: scope", "not one of shared, connection"),
    ('[namespaces.n]\nmounts = [{ path = "/", backend = "ram" }, { path = "//", backend = "ram" }]'
     '\n[[policy]]\nnamespace="n"\n', "[namespaces.n]: mounts", "mounted twice"),
    ("[[listen]]\nkind = 'carrier-pigeon'\n" + BASE + "[[policy]]\nnamespace = 'n'\n",
     "[[listen]] #1: kind", "not one of tcp, unix, tls, stdio, systemd"),
    ("[[listen]]\nkind = 'tcp'\naddress = 'nowhere'\n" + BASE + "[[policy]]\nnamespace = 'n'\n",
     "[[listen]] #1: address", "HOST:PORT"),
    ("[[listen]]\nkind = 'unix'\npath = '/s'\nmode = 'rw'\n" + BASE
     + "[[policy]]\nnamespace = 'n'\n", "[[listen]] #1: mode", "octal"),
    ("[[listen]]\nkind = 'tcp'\naddress = 'a:1'\ncert = 'c'\n" + BASE
     + "[[policy]]\nnamespace = 'n'\n", "[[listen]] #1: cert", "only for kind = \"tls\""),
    ("[[listen]]\nkind = 'tls'\naddress = 'a:1'\ncert = 'c.pem'\nkey = 'k.pem'\n" + BASE
     + "[[policy]]\nnamespace = 'n'\n", "[[listen]] #1: cert", "no such file"),
    ("[server]\nmsize = 1\n" + BASE + "[[policy]]\nnamespace = 'n'\n", "[server]: msize",
     "out of range"),
])
def test_each_error_names_the_file_the_table_and_the_key(tmp_path: Path, text: str, where: str,
                                                         problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BackendConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert where in message and problem in message, message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(BackendConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(BackendConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[policy\n"))


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ninep", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_check_config_prints_each_policy_as_a_tree_in_the_order_tried(tmp_path: Path) -> None:
    result = check_config(write(tmp_path, GOOD))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("policy 'users' (tried 1;") < out.index("policy '#2' (tried 2;")
    assert "match anyone" in out and "squash=root" in out and "max_fids=10" in out
    assert "├── deep\n" in out and "│   └── er\n" in out and "link  symlink:../../tmp" in out
    assert "tmp  ram, per connection" in out and "motd  inline:hello {uname}" in out


def test_check_config_opens_the_backends_and_fails_with_exit_2(tmp_path: Path) -> None:
    bad = GOOD.replace('options = { size = "16M" }', 'options = { size = "lots" }')
    result = check_config(write(tmp_path, bad))
    assert result.returncode == 2
    assert "size='lots'" in result.stderr and "[namespaces.home] mounts[0]" in result.stderr
    # a file backend cannot hold a mount below it: found when the tree is built
    nested = GOOD.replace('"/deep/er/link"', '"/etc/motd/inside"')
    result = check_config(write(tmp_path, nested))
    assert result.returncode == 2 and "[namespaces.home]: mounts:" in result.stderr


PLACEHOLDER_MOUNT = textwrap.dedent("""
    [namespaces.home]
    mounts = [{{ path = "/", backend = "ram" }},
              {{ path = "/u", backend = "{kind}", source = "{source}", options = {{ {options} }} }}]
    [[policy]]
    namespace = "home"
""")


@pytest.mark.parametrize(("kind", "source", "options", "key", "problem"), [
    ("passthrough", "/srv/{uname}", 'bogus_option = "1"', "options.bogus_option",
     "unknown option 'bogus_option' for backend 'passthrough'"),
    ("passthrough", "/srv/{uname}", 'max_fds = "many"', "options.max_fds",
     "expected an integer"),
    ("passthrough", "/srv/{uname}", 'security_model = "magic"', "options.security_model",
     "expected one of passthrough, mapped-xattr, none"),
    ("tar", "/srv/{uname}.tar", "lenient = 3", "options.lenient", "expected true or false"),
    ("ram", "", 'mode = "{uid}", size = "lots"', "options.size", "expected an integer"),
    ("ram", "", 'mode = "{uid}", colour = "x"', "options.colour", "unknown option 'colour'"),
    ("overlay", "", 'lower = "tar:/srv/{uname}.tar", upper = { backend = "ram", '
     'options = { colour = "red" } }', "options.upper", "overlay upper: unknown option 'colour'"),
])
def test_check_config_rejects_a_bad_option_of_a_placeholder_mount(
        tmp_path: Path, kind: str, source: str, options: str, key: str, problem: str) -> None:
    """A mount opened only at attach (a placeholder in its source or options) is
    checked against its kind's options when the file is read, not at the first attach."""
    path = write(tmp_path, PLACEHOLDER_MOUNT.format(kind=kind, source=source, options=options))
    result = check_config(path)
    assert result.returncode == 2, result.stdout
    assert f"{path}: [namespaces.home] mounts[1]: {key}: " in result.stderr, result.stderr
    assert problem in result.stderr, result.stderr


def test_a_placeholder_option_is_checked_by_name_and_opened_once_expanded(
        tmp_path: Path) -> None:
    path = write(tmp_path, PLACEHOLDER_MOUNT.format(
        kind="passthrough", source="/srv/{uname}", options='threads = "{uid}"'))
    config = load_config(path)
    (_, mount) = config.namespaces["home"].mounts
    assert mount.kind == "passthrough" and mount.placeholders == {"uname", "uid"}
    assert dict(mount.options) == {"threads": "{uid}"}


def test_one_limits_type_a_policy_narrows_the_servers(tmp_path: Path) -> None:
    """[server] and a policy's limits are one type, parsed once: a policy's table
    narrows the server's figures (here [server] max_fids = 1000 is kept), and a
    policy without one keeps the server's."""
    from ninep.server.session import ServerLimits
    from ninep.vfs.policy import Limits
    assert ServerLimits is Limits
    config = load_config(write(tmp_path, GOOD))
    users, second = config.policies
    assert users.limits == dataclasses.replace(config.limits, max_fids=10, max_msize=8192)
    assert config.limits.max_fids == 1000 and second.limits is None
    for table in ("[server]\nhandshake_timeout = 0\n", "[server]\nmax_inflight = 0\n"):
        with pytest.raises(BackendConfigError, match="out of range"):
            load_config(write(tmp_path, GOOD.replace("[server]\n", table)))
