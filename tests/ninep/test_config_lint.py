"""ninep/config/lint.py and ``ninep check-config``'s warnings, through the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_client, make_server
from ninep.config.file import load_config
from ninep.config.lint import config_warnings

RAM = '[namespaces.data]\nmounts = [{ path = "/", backend = "ram" }]\n\n'


def policy(name: str, match: str = "", extra: str = "") -> str:
    return (f'[[policy]]\nname = "{name}"\nnamespace = "data"\n{extra}'
            + (f"match = {{ {match} }}\n" if match else "") + "\n")


def tcp(address: str = "127.0.0.1:5640") -> str:
    return f'[[listen]]\nkind = "tcp"\naddress = "{address}"\n\n'


def unix() -> str:
    return '[[listen]]\nkind = "unix"\npath = "ninep.sock"\n\n'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("pki")
    make_ca(where / "ca")
    make_server(where / "ca", where / "srv", "localhost", ips=["127.0.0.1"])
    make_client(where / "ca", where / "cli", "laptop")
    return where


def tls(pki: Path, client_ca: bool) -> str:
    text = (f'[[listen]]\nkind = "tls"\naddress = "0.0.0.0:5641"\n'
            f'cert = "{pki}/srv/server.crt"\nkey = "{pki}/srv/server.key"\n')
    if client_ca:
        text += f'client_ca = "{pki}/ca/ca.crt"\n'
    return text + "\n"


def warnings_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "ninep.toml"
    path.write_text(text)
    return config_warnings(load_config(path))


def check_config(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ninep", "check-config", *args, str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_certificate_policy_without_a_tls_listener_asking_for_certificates(
        tmp_path: Path, pki: Path) -> None:
    cert_policy = policy("laptops", 'cert_cn = "laptop"')
    [warning] = warnings_of(tmp_path, tcp() + RAM + cert_policy + policy("rest"))
    assert "policy 'laptops' matches on a client certificate (cert_cn)" in warning
    assert "no listener speaks TLS" in warning
    [warning] = warnings_of(tmp_path, tls(pki, False) + RAM + cert_policy + policy("rest"))
    assert "no TLS listener asks for one (tls://0.0.0.0:5641 has no client_ca)" in warning
    assert warnings_of(tmp_path, tls(pki, True) + RAM + cert_policy + policy("rest")) == []


def test_a_peer_uid_match_without_a_unix_listener(tmp_path: Path) -> None:
    root = policy("root", "peer_uid = 0")
    [warning] = warnings_of(tmp_path, tcp() + RAM + root + policy("rest"))
    assert "policy 'root' matches on peer_uid" in warning and "no unix listener" in warning
    [warning] = warnings_of(tmp_path, RAM + root + policy("rest"))
    assert "no [[listen]], so the default tcp listener" in warning
    assert warnings_of(tmp_path, tcp() + unix() + RAM + root + policy("rest")) == []


def test_authorized_keys_without_a_key_policy_and_the_converse(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text("")
    auth = f'[auth]\nauthorized_keys = "{keys}"\n\n'
    [warning] = warnings_of(tmp_path, auth + RAM + policy("anyone"))
    assert "no policy matches on `key`" in warning and "never asked for" in warning
    [warning] = warnings_of(tmp_path, RAM + policy("ops", 'key = "ops@bastion"')
                            + policy("rest"))
    assert "policy 'ops' matches on `key`, but [auth] has no authorized_keys" in warning
    assert warnings_of(tmp_path, auth + RAM + policy("ops", 'key = "ops@bastion"')
                       + policy("rest")) == []


@pytest.mark.parametrize(("first", "second", "shadowed"), [
    ("", "", True),  # two policies for everyone: the second is never tried
    ('address = "10.0.0.0/8"', 'address = "10.1.0.0/16"', True),
    ('address = "10.1.0.0/16"', 'address = "10.0.0.0/8"', False),
    ('peer_uid = "1000-1999"', 'peer_uid = [1000, "1500-1600"]', True),
    ('peer_uid = "1000-1999"', 'peer_uid = "1500-2500"', False),
    ('aname = ["a", "b"]', 'aname = "/a/"', True),
    ('transport = "tcp"', 'transport = "tcp", aname = "x"', False),  # more specific: tried first
    ('transport = "tcp", aname = "x"', 'transport = "tcp"', False),
])
def test_a_policy_shadowed_by_one_tried_before_it(tmp_path: Path, first: str, second: str,
                                                  shadowed: bool) -> None:
    found = warnings_of(tmp_path, tcp() + unix() + RAM + policy("first", first)
                        + policy("second", second))
    expected = ["policy 'second' is shadowed by policy 'first'"] if shadowed else []
    assert [w.split(", tried")[0] for w in found if " is shadowed by " in w] == expected


def test_a_listener_no_policy_can_match(tmp_path: Path, pki: Path) -> None:
    [warning] = warnings_of(tmp_path, tcp() + unix() + RAM
                            + policy("local", 'transport = "unix"'))
    assert warning.startswith("listener tcp://127.0.0.1:5640: no policy can match")
    assert "'local': transport is unix" in warning
    # a loopback listener never hears a peer from 10.0.0.0/8
    [warning] = warnings_of(tmp_path, tcp() + RAM + policy("lan", 'address = "10.0.0.0/8"'))
    assert "only hears loopback" in warning
    assert warnings_of(tmp_path, tcp("0.0.0.0:5640") + RAM
                       + policy("lan", 'address = "10.0.0.0/8"')) == []
    # a certificate policy on a TLS listener that asks for certificates is fine
    assert warnings_of(tmp_path, tls(pki, True) + RAM
                       + policy("laptops", 'cert_cn = "laptop"')) == []


def test_check_config_prints_warnings_and_strict_fails_on_them(tmp_path: Path) -> None:
    path = tmp_path / "ninep.toml"
    path.write_text(tcp() + RAM + policy("root", "peer_uid = 0") + policy("rest"))
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "ninep check-config: warning: policy 'root' matches on peer_uid" in result.stderr
    assert check_config(path, "--strict").returncode == 1
    path.write_text(tcp() + unix() + RAM + policy("root", "peer_uid = 0") + policy("rest"))
    result = check_config(path, "--strict")
    assert result.returncode == 0 and result.stderr == ""


def test_check_config_shows_the_default_listener_and_the_anonymous_ids(tmp_path: Path) -> None:
    path = tmp_path / "ninep.toml"
    path.write_text(RAM + policy("guests", extra='squash = "all"\nanon_uid = 0\n'
                                 'anon_gid = 4000000\n'))
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert ("listen: no [[listen]]: the sockets systemd passes, else tcp://127.0.0.1:5640"
            in result.stdout)
    assert ("[squash=all -> anonymous uid 0 (root), gid 4000000 (no name on this host)]"
            in result.stdout)
