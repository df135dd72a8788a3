"""max_connections and max_connections_per_peer: [server] keys and serve options, each bad
value one clear error; max_connections lowered to what RLIMIT_NOFILE holds."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ninep.backends.registry import BackendConfigError
from ninep.config.connections import ConnectionLimits
from ninep.config.file import load_config
from tests.conftest import free_port, wait_for_port

BASE = textwrap.dedent("""
    [namespaces.n]
    mounts = [{ path = "/", backend = "ram" }]

    [[policy]]
    namespace = "n"
    """)


def write(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "ninep.toml"
    path.write_text(f"[server]\n{server}\n{BASE}")
    return path


def test_the_keys_set_the_limits_and_default_to_1024_and_256(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "max_connections = 100\nmax_connections_per_peer = 7"))
    assert config.connections == ConnectionLimits(100, 7)
    assert load_config(write(tmp_path, "")).connections == ConnectionLimits(1024, 256)


@pytest.mark.parametrize("key", ["max_connections", "max_connections_per_peer"])
@pytest.mark.parametrize(("value", "problem"), [
    ("0", "out of range 1.."), ("-5", "out of range 1.."), ("'many'", "expected an integer"),
    ("2.5", "expected an integer"), ("true", "expected an integer"),
])
def test_a_bad_value_names_the_key(tmp_path: Path, key: str, value: str, problem: str) -> None:
    path = write(tmp_path, f"{key} = {value}")
    with pytest.raises(BackendConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: [server]: {key}: "), caught.value
    assert problem in str(caught.value)


def test_check_config_knows_the_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "max_connections = 10\nmax_connections_per_peer = 2")
    done = subprocess.run([sys.executable, "-m", "ninep", "check-config", "--strict", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("option", ["--max-connections", "--max-connections-per-peer"])
@pytest.mark.parametrize("value", ["0", "-1", "ten", "1.5"])
def test_a_bad_option_exits_2_naming_it(option: str, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ninep", "serve", option, value],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"argument {option}: " in done.stderr and "Traceback" not in done.stderr


def test_max_connections_is_lowered_to_what_the_descriptor_limit_holds(tmp_path: Path) -> None:
    def limit_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ninep", "serve", "--listen",
                                 f"tcp://127.0.0.1:{port}", "--max-connections", "1000"],
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=limit_descriptors)
    try:
        wait_for_port(port, proc)
    finally:
        proc.terminate()
        proc.wait(20)
    # 512 - 64 of the server's own - half (256) for clients' files
    assert "max_connections lowered from 1000 to 192" in log.read_text()
    assert log.read_text().count("max_connections lowered") == 1
