"""docs/examples/*.toml pass ``ninep check-config --strict``, with the files they name."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ninep.certs import make_ca, make_server

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ninep", "check-config", "--strict", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def installed(tmp_path: Path, name: str) -> Path:
    """The example copied into ``tmp_path``, its /srv/ paths moved into ``tmp_path``."""
    text = (EXAMPLES / name).read_text().replace('"/srv/', f'"{tmp_path}/srv/')
    text = text.replace(":/srv/", f":{tmp_path}/srv/").replace("/run/ninep/", f"{tmp_path}/")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == [
        "home-tls.toml", "image-overlays.toml", "qemu-share.toml"]


def test_home_directories_over_tls(tmp_path: Path) -> None:
    path = installed(tmp_path, "home-tls.toml")
    make_ca(tmp_path / "tls")  # the commands the example's comment gives
    make_server(tmp_path / "tls", tmp_path / "tls", "files.example.org")
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "listen tls://0.0.0.0:5640" in result.stdout
    assert "match cert_cn=alice uname=alice" in result.stdout
    assert "squash=root -> anonymous uid 65534" in result.stdout


def test_a_read_only_image_with_per_client_overlays(tmp_path: Path) -> None:
    path = installed(tmp_path, "image-overlays.toml")
    (tmp_path / "srv" / "images").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("lab\n")
    with tarfile.open(tmp_path / "srv" / "images" / "base.tar", "w") as tar:
        tar.add(tmp_path / "etc", "etc")
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("policy 'the image, read-only' (tried 1;") < out.index(
        "policy 'lab machines' (tried 2;")
    assert "per connection" in out and "read-only" in out


def test_a_qemu_share(tmp_path: Path) -> None:
    path = installed(tmp_path, "qemu-share.toml")
    (tmp_path / "srv" / "vm-share").mkdir(parents=True)
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "uid 0-65535->200000" in result.stdout


@pytest.mark.parametrize("name", ["image-overlays.toml", "qemu-share.toml"])
def test_a_missing_source_is_still_an_error(tmp_path: Path, name: str) -> None:
    """The examples are checked for real: their backends are opened."""
    result = check_config(installed(tmp_path, name))
    assert result.returncode == 2 and str(tmp_path) in result.stderr
