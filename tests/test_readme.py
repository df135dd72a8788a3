"""The README's code blocks run as written, against a real server, as a reader pastes them.

Every fenced block is one test, in the README's order. A block that cannot run here
carries a marker, an HTML comment on the line just above its fence, whose reason is the
test's skip reason (``pytest -rs`` shows it):

- ``<!-- readme-test: skip: REASON -->``: not run (it needs root, QEMU, a kernel mount...);
- ``<!-- readme-test: parse: REASON -->``: every ``ninep`` command in it is checked by
  ninep's own argument parser instead of run (servers that run until stopped, paths that
  stand for the reader's own);
- ``<!-- readme-test: needs PATH... -->``: run where every PATH exists (a Debian package,
  a device), skipped elsewhere.

Unmarked ``sh`` blocks run in bash (``-e -o pipefail``), ``python`` blocks run as a
program, ``toml`` blocks go through ``ninep check-config``; an unmarked block in any other
language fails, so a new block is either run or says why not. Blocks run in a scratch
directory that links to the clone's files (so ``.venv``, ``scripts/`` and ``docs/`` are
where the README says), with ``.venv`` activated, ``/usr/sbin`` off ``PATH`` and a normal
user's name (nobody) in ``USER``, which the client sends as its uname; ``127.0.0.1:5640``
(or ``localhost:5640``) becomes the test server's address, and ``NINEP_SERVER`` names it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(\w+):?\s*(.*?)\s*-->$")
SHELLS = {"sh", "bash", "shell"}
#: what a block's run may take: a CLI call is under a second, diodload a few
BLOCK_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    """One fenced block of the README and the marker above it, if any."""

    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str = ""  # skip, parse, needs or ""
    reason: str = ""

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang or 'plain'}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each with the marker on the line above its fence."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")),
                   len(lines))
        above = lines[index - 1].strip() if index else ""
        marked = MARKER.match(above)
        blocks.append(Block(index + 1, opening.group(1), "\n".join(lines[index + 1:end]) + "\n",
                            *(marked.groups() if marked else ("", ""))))
        index = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


@dataclass(frozen=True)
class Reader:
    """Where a reader pastes the blocks: a directory, an environment, a server."""

    cwd: Path
    env: dict[str, str]
    server: RunningServer

    def localize(self, code: str) -> str:
        """The block with the default address replaced by the test server's."""
        port = self.server.port
        return (code.replace("127.0.0.1:5640", f"127.0.0.1:{port}")
                .replace("localhost:5640", f"localhost:{port}")
                .replace("port=5640", f"port={port}"))

    def run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT, check=False)
        assert done.returncode == 0, (
            f"{argv[0]} exited {done.returncode}\n--- stdout\n{done.stdout}\n"
            f"--- stderr\n{done.stderr}")


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reader]:
    from ninep.config.defaults import default_policy

    cwd = tmp_path_factory.mktemp("clone")
    for entry in REPO.iterdir():
        if entry.name != ".git":
            (cwd / entry.name).symlink_to(entry)
    venv_bin = Path(sys.prefix) / "bin"
    user_path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
                 if p and not p.rstrip("/").endswith("sbin")]
    server = start_server(default_policy)
    env = {**os.environ, "PATH": os.pathsep.join([str(venv_bin), *user_path]),
           "VIRTUAL_ENV": sys.prefix, "NINEP_SERVER": server.tcp_url,
           "USER": "nobody", "LOGNAME": "nobody"}
    for name in ("PYTHONPATH", "NINEP_UNAME", "NINEP_ANAME", "NINEP_CA", "NINEP_CERT",
                 "NINEP_TLS_KEY", "NINEP_KEY", "NINEP_SERVER_NAME"):
        env.pop(name, None)
    try:
        yield Reader(cwd, env, server)
    finally:
        server.stop()


def logical_lines(code: str) -> Iterator[str]:
    """The block's lines with backslash continuations joined."""
    pending = ""
    for line in code.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def ninep_commands(code: str) -> Iterator[list[str]]:
    """The argument lists of the ``ninep`` commands in a shell block."""
    for line in logical_lines(code):
        command: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word in ("&&", "||", ";", "|"):
                if command and command[0] == "ninep":
                    yield command[1:]
                command = []
            else:
                command.append(word)


def check_parses(code: str) -> None:
    from ninep.cli import build_parser

    commands = list(ninep_commands(code))
    assert commands, "a parse block holds no ninep command"
    for argv in commands:
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"ninep {shlex.join(argv)}: {errors.getvalue()}"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block(block: Block, reader: Reader) -> None:
    if block.marker == "skip":
        pytest.skip(f"README line {block.line}: {block.reason}")
    if block.marker == "parse":
        assert block.lang in SHELLS, f"README line {block.line}: parse marks a shell block"
        check_parses(block.code)
        return
    missing = [path for path in block.reason.split() if not Path(path).exists()]
    if block.marker == "needs" and missing:
        pytest.skip(f"README line {block.line}: needs {' '.join(missing)}, not here")
    assert block.marker in ("", "needs"), (
        f"README line {block.line}: unknown marker {block.marker!r} (skip, parse or needs)")
    code = reader.localize(block.code)
    if block.lang in SHELLS:
        reader.run(["bash", "-e", "-o", "pipefail", "-c", code])
    elif block.lang == "python":
        program = reader.cwd / f"readme_{block.line}.py"
        program.write_text(code)
        reader.run(["python", program.name])
    elif block.lang == "toml":
        config = reader.cwd / f"readme_{block.line}.toml"
        config.write_text(code)
        reader.run(["ninep", "check-config", config.name])
    else:
        pytest.fail(f"README line {block.line}: a {block.lang or 'plain'} block is not run; "
                    "mark it <!-- readme-test: skip: REASON --> (or parse, or needs PATH)")


def test_every_marker_has_a_reason() -> None:
    for block in BLOCKS:
        if block.marker:
            assert block.reason, f"README line {block.line}: a marker says why"


def test_markers_stand_above_a_fence() -> None:
    lines = README.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if MARKER.match(line.strip()):
            following = lines[number] if number < len(lines) else ""
            assert FENCE.match(following), f"README line {number}: a marker without its block"


def test_the_kernel_suite_boots_as_the_readme_says() -> None:
    from tests.kernel.harness import BOOTS

    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    said = re.search(r"\((\w+)\s+QEMU\s+boots", README.read_text())
    assert said, "the README says how many QEMU boots scripts/test runs"
    assert said.group(1) == words.get(len(BOOTS), str(len(BOOTS)))


def test_blocks_and_their_markers_are_read() -> None:
    text = ("intro\n\n<!-- readme-test: skip: needs root -->\n```sh\nmount x\n```\n\n"
            "```python\nprint(1)\n```\n")
    skipped, program = readme_blocks(text)
    assert (skipped.line, skipped.lang, skipped.marker, skipped.reason) == (4, "sh", "skip",
                                                                           "needs root")
    assert (program.line, program.lang, program.code, program.marker) == (8, "python",
                                                                          "print(1)\n", "")


def test_the_parse_check_catches_an_unknown_option() -> None:
    assert list(ninep_commands("ninep serve --msize 8192 \\\n  --max-fids 9 # why\n"
                               "x && ninep ls /\n")) == [
        ["serve", "--msize", "8192", "--max-fids", "9"], ["ls", "/"]]
    with pytest.raises(AssertionError, match="no-such-option"):
        check_parses("ninep serve --no-such-option\n")
