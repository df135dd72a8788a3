"""``ninep`` client verbs against a real ``ninep serve --config`` process with a TLS listener."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_client, make_server
from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TlsServer:
    port: int
    pki: Path

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A server that requires a client certificate signed by its CA; its certificate
    names 127.0.0.1 and ninep.test."""
    pki = tmp_path_factory.mktemp("pki")
    make_ca(pki / "ca")
    make_server(pki / "ca", pki / "srv", "ninep.test", ips=["127.0.0.1"])
    make_client(pki / "ca", pki / "cli", "laptop")
    make_ca(pki / "other-ca", name="someone else's CA")
    make_client(pki / "other-ca", pki / "stranger", "stranger")
    port = free_port()
    config = pki / "server.toml"
    config.write_text(textwrap.dedent(f"""
        [[listen]]
        kind = "tls"
        address = "127.0.0.1:{port}"
        cert = "{pki / 'srv' / 'server.crt'}"
        key = "{pki / 'srv' / 'server.key'}"
        client_ca = "{pki / 'ca' / 'ca.crt'}"
        client_cert = "required"

        [namespaces.main]
        mounts = [{{ path = "/", backend = "ram", options = {{ mode = "1777" }} }},
                  {{ path = "/hello", backend = "inline", source = "hello over tls" }}]

        [[policy]]
        name = "certified"
        namespace = "main"
        match = {{ transport = "tls", cert_cn = "laptop" }}
        """))
    log = (pki / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, proc)
        yield TlsServer(port, pki)
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def ninep(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NINEP_")}
    return subprocess.run([sys.executable, "-m", "ninep.clients.cli", *argv], capture_output=True,
                          text=True, cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
                          timeout=60)


def _client_options(server: TlsServer) -> list[str]:
    return ["--ca", str(server.pki / "ca" / "ca.crt"),
            "--cert", str(server.pki / "cli" / "laptop.crt"),
            "--tls-key", str(server.pki / "cli" / "laptop.key")]


def test_cat_over_tls_with_a_client_certificate(tls_server: TlsServer) -> None:
    done = ninep("cat", "--server", tls_server.url, *_client_options(tls_server), "/hello")
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello over tls\n", "")


def test_tls_options_from_the_environment(tls_server: TlsServer) -> None:
    pki = tls_server.pki
    env = {"NINEP_SERVER": tls_server.url, "NINEP_CA": str(pki / "ca" / "ca.crt"),
           "NINEP_CERT": str(pki / "cli" / "laptop.crt"),
           "NINEP_TLS_KEY": str(pki / "cli" / "laptop.key")}
    done = ninep("cat", "/hello", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello over tls\n", "")


def _refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "connection closed" not in done.stderr
    return done.stderr


def test_no_client_certificate_is_explained(tls_server: TlsServer) -> None:
    message = _refusal(ninep("ls", "--server", tls_server.url,
                             "--ca", str(tls_server.pki / "ca" / "ca.crt")))
    # an asyncio server sends no alert: the client infers it from the close
    assert "client certificate" in message and "no client certificate was given" in message


def test_unknown_server_ca_is_explained(tls_server: TlsServer) -> None:
    message = _refusal(ninep("ls", "--server", tls_server.url))  # the system's CAs only
    assert "unknown CA" in message and "--ca" in message


def test_client_certificate_of_an_unknown_ca_is_explained(tls_server: TlsServer) -> None:
    pki = tls_server.pki
    message = _refusal(ninep("ls", "--server", tls_server.url, "--ca", str(pki / "ca" / "ca.crt"),
                             "--cert", str(pki / "stranger" / "stranger.crt"),
                             "--tls-key", str(pki / "stranger" / "stranger.key")))
    assert "refused our client certificate" in message
    assert "no client certificate was given" not in message


def test_name_mismatch_is_explained(tls_server: TlsServer) -> None:
    message = _refusal(ninep("ls", "--server", tls_server.url, *_client_options(tls_server),
                             "--server-name", "elsewhere.test"))
    assert "name mismatch" in message and "elsewhere.test" in message


def test_the_certificate_name_can_be_given(tls_server: TlsServer) -> None:
    done = ninep("cat", "--server", tls_server.url, *_client_options(tls_server),
                 "--server-name", "ninep.test", "/hello")
    assert (done.returncode, done.stdout) == (0, "hello over tls\n")


def test_plain_tcp_to_a_tls_port_and_tls_options_without_tls(tls_server: TlsServer) -> None:
    done = ninep("ls", "--server", f"127.0.0.1:{tls_server.port}", *_client_options(tls_server))
    assert done.returncode == 2 and f"tls://127.0.0.1:{tls_server.port}" in done.stderr
    done = ninep("ls", "--server", f"127.0.0.1:{tls_server.port}")
    assert done.returncode == 1 and done.stderr.count("\n") == 1


def test_a_missing_or_bad_tls_file_is_named(tls_server: TlsServer, tmp_path: Path) -> None:
    done = ninep("ls", "--server", tls_server.url, "--ca", str(tmp_path / "absent.crt"))
    assert (done.returncode, done.stderr) == (
        1, f"ninep: {tmp_path / 'absent.crt'}: No such file or directory\n")
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    done = ninep("ls", "--server", tls_server.url, "--cert", str(junk))
    assert done.returncode == 1 and done.stderr.startswith(f"ninep: {junk}: not usable as PEM")


def test_tls_variables_do_not_break_a_plain_server(tls_server: TlsServer) -> None:
    # NINEP_CA exported for the TLS server; a tcp:// server on the command line ignores it
    done = ninep("ls", "--server", "tcp://127.0.0.1:1", env={
        "NINEP_CA": str(tls_server.pki / "ca" / "ca.crt")})
    assert done.returncode == 1 and "cannot connect" in done.stderr
