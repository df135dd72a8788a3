"""``ninep fuse`` as a process: what it says when it cannot mount, and a server that goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_client, make_server
from tests.conftest import free_port, wait_for_port
from tests.hostile.serverproc import serve_process

from .conftest import MISSING, ROOT, fuse_mount

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def ninep_fuse(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ninep", "fuse", *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_no_server_no_mount(tmp_path: Path) -> None:
    done = ninep_fuse(f"127.0.0.1:{free_port()}", str(tmp_path))
    assert done.returncode == 1
    assert "cannot connect" in done.stderr or "refused" in done.stderr.lower(), done.stderr
    assert not os.path.ismount(tmp_path)
    done = ninep_fuse("ftp://example", str(tmp_path))
    assert done.returncode == 2 and "scheme" in done.stderr
    done = ninep_fuse("127.0.0.1:1", str(tmp_path / "missing"))
    assert done.returncode == 1 and "not a directory" in done.stderr


def test_a_lost_server_unmounts_and_fails(tmp_path: Path) -> None:
    with serve_process(["--mount", "/=ram"], tmp_path, log_level="warning") as server:
        mount = fuse_mount(f"tcp://127.0.0.1:{server.port}", tmp_path / "mnt",
                           tmp_path / "fuse.log")
        with mount as mnt:
            (mnt / "f").write_bytes(b"x")
            server.proc.kill()
            server.proc.wait()
            # EIO from the mount, ECONNABORTED if it is ending, or ENOENT from the
            # directory below: the release of "f" may have found the server gone first
            with pytest.raises(OSError):
                os.stat(mnt / "other")
            assert mount.proc is not None
            assert mount.proc.wait(30) == 1
            assert not os.path.ismount(mnt)
        assert "unmounting" in (tmp_path / "fuse.log").read_text()


TLS_CONFIG = """
[[listen]]
kind = "tls"
address = "127.0.0.1:{port}"
cert = "{pki}/srv/server.crt"
key = "{pki}/srv/server.key"
client_ca = "{pki}/ca/ca.crt"
client_cert = "required"

[namespaces.main]
mounts = [{{ path = "/", backend = "ram", options = {{ mode = "1777" }} }},
          {{ path = "/hello", backend = "inline", source = "hello over tls" }}]

[[policy]]
name = "certified"
namespace = "main"
match = {{ transport = "tls", cert_cn = "laptop" }}
"""


def test_a_mount_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_ca(pki / "ca")
    make_server(pki / "ca", pki / "srv", "ninep.test", ips=["127.0.0.1"])
    make_client(pki / "ca", pki / "cli", "laptop")
    port = free_port()
    config = tmp_path / "server.toml"
    config.write_text(TLS_CONFIG.format(port=port, pki=pki))
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config",
                                   str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for_port(port, server)
        url = f"tls://127.0.0.1:{port}"
        refused = ninep_fuse(url, str(tmp_path), "--cert", str(pki / "cli" / "laptop.crt"),
                             "--tls-key", str(pki / "cli" / "laptop.key"))
        assert refused.returncode == 1 and "unknown CA" in refused.stderr, refused.stderr
        with fuse_mount(url, tmp_path / "mnt", tmp_path / "fuse.log",
                        "--ca", str(pki / "ca" / "ca.crt"),
                        "--cert", str(pki / "cli" / "laptop.crt"),
                        "--tls-key", str(pki / "cli" / "laptop.key")) as mnt:
            assert (mnt / "hello").read_text() == "hello over tls\n"
            (mnt / "written").write_text("through fuse and tls")
            assert sorted(os.listdir(mnt)) == ["hello", "written"]
    finally:
        server.terminate()
        server.wait(20)
