"""``mount.ninep`` as mount(8) runs it for an fstab line, against a real ``ninep serve``
process with a TLS listener that requires a client certificate and a key policy.

This machine's kernel has no 9p module: ``-f`` (mount(8)'s fake mount) runs
everything up to mount(2); tests/kernel does the real mount.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_client, make_server, make_ssh_keypair
from ninep.mount.fstab import fstab_to_ninep_mount
from tests.conftest import free_port, wait_for_port

HELPER = [sys.executable, "-m", "ninep.mount.fstab"]


@dataclass
class TlsKeyServer:
    port: int
    dir: Path
    fingerprint: str
    log: Path

    def options(self, *more: str, key: str = "alice") -> str:
        d = self.dir
        return ",".join([
            "tls", f"ca={d}/ca/ca.crt", f"cert={d}/cli/laptop.crt", f"key={d}/cli/laptop.key",
            "server_name=localhost", f"auth_key={d}/{key}", "aname=data", *more])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKeyServer]:
    d = tmp_path_factory.mktemp("fstab")
    make_ca(d / "ca")
    make_server(d / "ca", d / "srv", "localhost", ips=["127.0.0.1"])
    make_client(d / "ca", d / "cli", "laptop")
    _, alice_pub, fingerprint = make_ssh_keypair(d / "alice", "alice@test")
    make_ssh_keypair(d / "mallory", "mallory@test")
    (d / "authorized_keys").write_bytes(alice_pub.read_bytes())
    port = free_port()
    (d / "ninep.toml").write_text(
        f'[[listen]]\nkind = "tls"\naddress = "127.0.0.1:{port}"\ncert = "srv/server.crt"\n'
        'key = "srv/server.key"\nclient_ca = "ca/ca.crt"\nclient_cert = "required"\n\n'
        '[auth]\nauthorized_keys = "authorized_keys"\n\n'
        '[namespaces.data]\nmounts = [{ path = "/", backend = "ram" }]\n\n'
        '[[policy]]\nname = "alice"\nnamespace = "data"\n'
        'match = { key = "alice@test", aname = "data" }\n')
    log = d / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config",
                                 str(d / "ninep.toml")], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 30)
        yield TlsKeyServer(port, d, fingerprint, log)
    finally:
        proc.terminate()
        proc.wait(20)


def helper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HELPER, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_an_fstab_line_with_tls_and_a_key(server: TlsKeyServer, tmp_path: Path) -> None:
    # as mount(8) runs a helper: SPEC DIR, then its own flags and -o with the fstab options
    result = helper(f"127.0.0.1:{server.port}", str(tmp_path), "-f", "-v", "-o",
                    server.options("ro", "msize=65536", "_netdev", "nofail",
                                   "x-systemd.automount", "defaults"))
    assert result.returncode == 0, result.stderr
    assert f"key {server.fingerprint} accepted" in result.stderr
    assert "not mounted" in result.stdout
    # mount(8)'s options are gone, v9fs's and the generic ones stay
    assert "-o ro,msize=65536 --fake --source" in result.stderr
    assert "_netdev" not in result.stderr.split("--source")[0].split("aname data")[1]


def test_a_key_the_server_does_not_know_fails_with_mounts_exit_status(
        server: TlsKeyServer, tmp_path: Path) -> None:
    result = helper(f"127.0.0.1:{server.port}", str(tmp_path), "-f", "-o",
                    server.options(key="mallory"))
    assert result.returncode == 32
    assert "refused the key" in result.stderr


def test_no_client_certificate_fails_at_the_handshake(server: TlsKeyServer,
                                                      tmp_path: Path) -> None:
    options = ",".join(o for o in server.options().split(",")
                       if not o.startswith(("cert=", "key=")))
    result = helper(f"127.0.0.1:{server.port}", str(tmp_path), "-f", "-o", options)
    assert result.returncode == 32 and "ninep mount:" in result.stderr


def test_port_as_a_mount_option(server: TlsKeyServer, tmp_path: Path) -> None:
    result = helper("127.0.0.1", str(tmp_path), "-f", "-o",
                    server.options(f"port={server.port}"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("options", "problem"), [
    ("ca", "expected ca=VALUE"),
    ("tls=yes", "tls takes no value"),
    ("port=ssh", "expected a TCP port"),
    ("trans=tcp", "set by ninep mount itself"),
])
def test_bad_options_exit_1(tmp_path: Path, options: str, problem: str) -> None:
    result = helper("127.0.0.1", str(tmp_path), "-o", options)
    assert problem in result.stderr
    assert result.returncode == (32 if "trans" in options else 1)


def test_the_translation() -> None:
    assert fstab_to_ninep_mount("files:5641", "/mnt", "tls,ca=/c,uname=alice,cache=loose,"
                                "comment=systemd.automount,noauto") == [
        "mount", "--tls", "--ca", "/c", "--uname", "alice", "-o", "cache=loose",
        "--source", "files:5641", "files:5641", "/mnt"]
    assert fstab_to_ninep_mount("[::1]", "/mnt", "port=5650")[-2] == "[::1]:5650"
    assert fstab_to_ninep_mount("/run/ninep.sock", "/mnt", "")[-2:] == ["/run/ninep.sock",
                                                                        "/mnt"]


@pytest.mark.skipif("9p" in Path("/proc/filesystems").read_text().split(),
                    reason="this kernel can mount 9p: tests/kernel covers it")
def test_without_f_it_reaches_mount_2_and_says_why_it_failed(server: TlsKeyServer,
                                                             tmp_path: Path) -> None:
    result = helper(f"127.0.0.1:{server.port}", str(tmp_path), "-o", server.options())
    assert result.returncode == 32
    assert f"key {server.fingerprint} accepted" in result.stderr
    assert f"mount {tmp_path}:" in result.stderr


def test_the_installed_script_is_the_helper(server: TlsKeyServer, tmp_path: Path) -> None:
    """pyproject installs mount.ninep beside ninep: what /sbin/mount.ninep links to."""
    script = Path(sys.executable).parent / "mount.ninep"
    result = subprocess.run([str(script), f"127.0.0.1:{server.port}", str(tmp_path), "-f",
                             "-o", server.options()], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"key {server.fingerprint} accepted" in result.stderr
