"""What contrib/ ships for operators: the systemd units, checked by systemd's own tools,
and the manual pages, rendered by man(1)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
MAN = ROOT / "contrib" / "man"


@pytest.fixture(scope="module")
def manpages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """contrib/man/make_manpages.py run as an operator would, into a fresh MANPATH."""
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(MAN / "make_manpages.py"), str(out)], check=True,
                   timeout=60, capture_output=True, cwd=ROOT)
    return out


def unit_lines(name: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze (Debian: systemd) is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path, manpages: Path) -> None:
    ninep = Path(sys.executable).parent / "ninep"
    for name in ("ninep.socket", "ninep.service"):
        text = (UNITS / name).read_text()
        # systemd-analyze checks that the executable exists: point it at this one
        text = text.replace("ExecStart=ninep ", f"ExecStart={ninep} ")
        (tmp_path / name).write_text(text)
    # with the man pages installed, their Documentation=man: references are checked too
    man = ["--man=yes"] if shutil.which("man") else ["--man=no"]
    result = subprocess.run(["systemd-analyze", "verify", *man,
                             str(tmp_path / "ninep.socket"), str(tmp_path / "ninep.service")],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "MANPATH": str(manpages)})
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_units_fit_the_server() -> None:
    socket_unit, service = unit_lines("ninep.socket"), unit_lines("ninep.service")
    # loopback by default; the name is what a [[listen]] kind = "systemd" table takes
    assert socket_unit["ListenStream"] == ["127.0.0.1:5640"]
    assert socket_unit["FileDescriptorName"] == ["ninep"]
    # READY=1 comes from ninep/server/sd_notify.py; SIGHUP is the server's reload
    assert service["Type"] == ["notify"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RestartPreventExitStatus"] == ["2"]  # ninep serve's exit for a bad config


def options_of(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings
            if flag.startswith("--") and flag != "--help"]


@pytest.mark.skipif(shutil.which("man") is None, reason="man (Debian: man-db) is not installed")
@pytest.mark.parametrize("page", ["man1/ninep.1", "man1/ninep-serve.1", "man5/ninep.toml.5"])
def test_the_man_pages_render_without_warnings(manpages: Path, page: str) -> None:
    result = subprocess.run(["man", "--warnings", "-l", str(manpages / page)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "SEE ALSO" in result.stdout


def test_the_man_pages_say_what_help_says(manpages: Path) -> None:
    from ninep.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    ninep_page = (manpages / "man1" / "ninep.1").read_text()
    serve_page = (manpages / "man1" / "ninep-serve.1").read_text()
    for name in commands.choices:
        assert f"ninep {name}" in ninep_page.replace("\\-", "-"), name
    for option in options_of(commands.choices["serve"]):
        assert option.replace("-", "\\-") in serve_page, option
    assert serve_page.startswith(".TH NINEP\\-SERVE \"1\"")
