"""Write the manual pages into OUTDIR/man1 and OUTDIR/man5: ninep(1) and ninep-serve(1)
from the live argparse parsers (argparse-manpage, so they say what --help says), and
the hand-written ninep.toml(5) beside them.

    .venv/bin/python contrib/man/make_manpages.py /usr/local/share/man
    man ninep-serve
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

from ninep.cli import build_parser

HERE = Path(__file__).resolve().parent
PAGES = {  # page name -> (subcommand or None, NAME line, include file)
    "ninep": (None, "a 9P2000.L file server with per-client namespaces, and its client",
              "ninep.include"),
    "ninep-serve": ("serve", "serve 9P2000.L over TCP, UNIX sockets, TLS, systemd sockets "
                    "or stdio", "ninep-serve.include"),
}


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)


def render(name: str) -> str:
    command, summary, include = PAGES[name]
    parser = build_parser()
    if command is not None:
        parser = subcommand(parser, command)
    page = Manpage(parser, _data={
        "project_name": "ninep", "version": version("ninep"), "description": summary,
        "manual_section": "1", "manual_title": "ninep manual", "include": str(HERE / include)})
    page.prog = name  # the title: ninep-serve(1), as git-commit(1) is for "git commit"
    return str(page)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    (out / "man1").mkdir(parents=True, exist_ok=True)
    (out / "man5").mkdir(parents=True, exist_ok=True)
    for name in PAGES:
        (out / "man1" / f"{name}.1").write_text(render(name))
    shutil.copyfile(HERE / "ninep.toml.5", out / "man5" / "ninep.toml.5")
    print(f"wrote {out}/man1/ninep.1, {out}/man1/ninep-serve.1, {out}/man5/ninep.toml.5")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
