"""Every TOML example in docs/config.md passes ``ninep check-config`` as written
(with /etc/ninep, /srv and /run moved into a temporary directory)."""

from __future__ import annotations

import importlib.util
import re
import tarfile
from pathlib import Path

import pytest

from ninep.backends.registry import KINDS
from ninep.cli import main
from tests.integration.policy_helpers import make_pki

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.S)


def test_the_document_has_examples() -> None:
    assert len(BLOCKS) >= 5


def _missing_backends(text: str) -> list[str]:
    kinds = set(re.findall(r'backend = "(\w+)"', text)) | set(re.findall(r'"(\w+):/', text))
    return [k for k in sorted(kinds) if k in KINDS
            and importlib.util.find_spec(KINDS[k].factory.split(":")[0]) is None]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The files the examples name: certificates, exported directories, an image."""
    etc = tmp_path / "etc" / "ninep"
    etc.mkdir(parents=True)
    pki = make_pki(etc)
    for src, dst in ((pki.server_cert, "server.pem"), (pki.server_key, "server.key"),
                     (pki.ca, "ca.pem")):
        (etc / dst).write_bytes(src.read_bytes())
    for sub in ("srv/export", "srv/home/alice", "srv/images", "run"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "srv/export/hello.txt").write_text("hello\n")
    with tarfile.open(tmp_path / "srv/images/base.tar", "w") as tar:
        tar.add(tmp_path / "srv/export/hello.txt", arcname="hello.txt")
    return tmp_path


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_example_passes_check_config(index: int, root: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = BLOCKS[index]
    missing = _missing_backends(text)
    if missing:
        pytest.skip(f"backend {', '.join(missing)} is not in this tree yet")
    for prefix in ("/etc/ninep/", "/srv/", "/run/"):
        text = text.replace(prefix, f"{root}{prefix}")
    path = root / f"example{index}.toml"
    path.write_text(text)
    status = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "valid" in out and "policy" in out
