"""The ``ninep`` command itself: --version, help for every option, --log-level choices."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from ninep.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ninep", *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


def test_version_comes_from_the_package_metadata() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, f"ninep {version}\n")


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _undocumented(sub, f"{path} {name}")
        elif not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_help_text() -> None:
    assert _undocumented(build_parser(), "ninep") == []


def test_a_bad_log_level_is_a_usage_error() -> None:
    done = run("serve", "--log-level", "verbose")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "invalid choice: 'verbose'" in done.stderr and "debug" in done.stderr
    args = build_parser().parse_args(["serve", "--log-level", "WARNING"])
    assert args.log_level == "warning"  # any case, as logging takes them
