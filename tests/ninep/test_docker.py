"""docker/: the compose file read as YAML, the Dockerfile's instructions, and the image's
own configuration and HEALTHCHECK run here as the container would run them.

There is no Docker engine on this machine; what the container runs (ninep serve
on docker/ninep.toml, python -m ninep.healthcheck) is run as a real process.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ninep.wire import messages as m
from tests.conftest import RawPeer, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def instruction(name: str) -> list[str]:
    return [args for word, args in instructions() if word == name]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def test_compose_publishes_on_loopback_only(compose: dict[str, Any]) -> None:
    service = compose["services"]["ninep"]
    assert service["ports"] == ["127.0.0.1:5640:5640"]
    context = (DOCKER / service["build"]["context"]).resolve()
    assert context == ROOT and (context / service["build"]["dockerfile"]).is_file()


def test_compose_keeps_the_container_unprivileged(compose: dict[str, Any]) -> None:
    service = compose["services"]["ninep"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert all(volume.endswith(":ro") for volume in service["volumes"])


def test_compose_does_not_override_the_listener(compose: dict[str, Any]) -> None:
    """A `command:` replaces the image's CMD: the listener must not live there."""
    assert "command" not in compose["services"]["ninep"]
    assert "--listen" not in (DOCKER / "compose.yaml").read_text()
    assert "--listen" not in (DOCKER / "Dockerfile").read_text()


def test_the_dockerfile() -> None:
    assert instruction("USER") == ["ninep"]
    assert instruction("EXPOSE") == ["5640"]
    assert json.loads(instruction("ENTRYPOINT")[0]) == ["ninep"]
    assert json.loads(instruction("CMD")[0]) == ["serve", "--config", "/etc/ninep/ninep.toml"]
    assert "COPY docker/ninep.toml /etc/ninep/ninep.toml" in [
        f"COPY {args}" for args in instruction("COPY")]
    for args in instruction("COPY"):  # every source exists in the build context (the root)
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
    [healthcheck] = instruction("HEALTHCHECK")
    assert "--interval=" in healthcheck and "--timeout=" in healthcheck


def healthcheck_command(port: int) -> list[str]:
    command = json.loads(instruction("HEALTHCHECK")[0].split(" CMD ", 1)[1])
    assert command == ["python", "-m", "ninep.healthcheck", "127.0.0.1:5640"]
    return [sys.executable, *command[1:-1], f"127.0.0.1:{port}"]


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """ninep serve on the image's config, its paths and port moved into this test."""
    port = free_port()
    export = tmp_path / "export"
    export.mkdir()
    (export / "hello.txt").write_text("hello\n")
    config = tmp_path / "ninep.toml"
    config.write_text((DOCKER / "ninep.toml").read_text()
                      .replace('"0.0.0.0:5640"', f'"127.0.0.1:{port}"')
                      .replace('"/srv/export"', f'"{export}"'))
    check = subprocess.run([sys.executable, "-m", "ninep", "check-config", "--strict",
                            str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield port, export
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_image_config_serves_read_only_and_the_healthcheck_passes(
        image_server: tuple[int, Path]) -> None:
    port, export = image_server
    assert subprocess.run(healthcheck_command(port), timeout=30).returncode == 0
    peer = RawPeer(("127.0.0.1", port))
    assert isinstance(peer.handshake(n_uname=os.getuid()), m.Rattach)
    reply = peer.rpc(m.Tlcreate(1, "new.txt", os.O_WRONLY, 0o644, 0))
    assert isinstance(reply, m.Rlerror) and reply.ecode == errno.EROFS
    peer.close()
    assert not (export / "new.txt").exists()


def test_the_healthcheck_fails_where_nothing_answers_9p(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(healthcheck_command(port), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 1 and "unhealthy: 127.0.0.1:" in result.stderr
