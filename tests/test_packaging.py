"""What ``pip install`` puts in site-packages: the one import name ``ninep``, nothing else.

The root folders vfs/, backends/ and clients/ reach the wheel through the links
ninep/vfs, ninep/backends and ninep/clients (docs/architecture.md).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, cwd=out)
    (path,) = out.glob("ninep-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_one_top_level_name(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"ninep"}
    top_level = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["ninep"]


def test_the_root_folders_are_in_the_wheel_under_ninep(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for folder in ("vfs", "backends", "clients"):
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*.py")
                   if "__pycache__" not in p.parts}
        assert sources, folder
        assert {f"ninep/{source}" for source in sources} <= names
        assert f"ninep/{folder}/py.typed" in names


def test_entry_points_name_modules_under_ninep(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    targets = [line.split("=", 1)[1].strip() for line in wheel.read(entry_points).decode()
               .splitlines() if "=" in line]
    assert targets and all(target.startswith("ninep.") for target in targets)
