"""The README's five-minute tour, run as a reader runs it, must print what it shows.

Every ``$`` line of the tour's ``sh`` blocks (up to the Xen lab, which
tests/lab covers) runs in bash, in order, on a terminal of 80 columns (a pty:
what a reader sees, e.g. stdout held back by the tools after their stderr), in a
fresh directory standing for the clone: ``.venv`` there is this interpreter's
environment, and ``scripts/run-daemon`` the repository's own without the lines
that set up the venv. The exports of one command reach the next.
``scripts/run-daemon`` runs in the first terminal: in the background here, a
later one stopping the one before as Ctrl-C would; what it prints on starting is
its output, and what it logs later stays in its terminal. A command ending in
``&`` runs in the background of the reader's terminal: what it prints counts as
the output of the command it follows, as on a terminal. The output is compared with the README
line by line, with the directory written ``/home/you/xenstore`` as there.

Each ``python`` block runs as a script (after the imports of the blocks before
it, as in one session): one that ends must end well and silent; one that runs
on (a watch) must have printed and not failed.

The tour runs twice: with our tools (``.venv/bin`` first on PATH, as the tour
says) and with Debian's C tools in their place, which the tour says behave the
same. Without the C tools that run skips, unless ``XS_REQUIRE_REFERENCE=1``.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import short_tempdir
from tests.tools import helpers

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
#: How the README writes the clone's directory.
DOC_ROOT = "/home/you/xenstore"
#: Xen's real xenstore-control (Debian's /usr/bin one is a wrapper that wants Xen).
C_CONTROL = "/usr/lib/xen-4.17/bin/xenstore-control"
COLUMNS, ROWS = 80, 24
#: How long a command's output (and its background's) may take to appear.
SETTLE = 10.0
#: How long a python block that printed may go on before it counts as one that runs on.
PYTHON_RUNS_ON = 0.5


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str
    text: str
    commands: list[Command]


def tour() -> list[Block]:
    """The tour's code blocks, in order: from its heading to the Xen lab's."""
    text = README.read_text()
    section = text[text.index("## A five-minute tour"):text.index("### A Xen lab")]
    blocks = []
    for kind, body in re.findall(r"```(sh|python)\n(.*?)```", section, re.S):
        commands: list[Command] = []
        if kind == "sh":
            for line in body.splitlines():
                if line.startswith("$ "):
                    commands.append(Command(line[2:]))
                else:
                    commands[-1].expected.append(line)
        blocks.append(Block(kind, body, commands))
    return blocks


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#[^'\"]*$", "", line)


class Job:
    """A process on a pty of its own, its output read as it comes."""

    def __init__(self, script: str, cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.process = subprocess.Popen(
            ["bash", "-c", script], stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
            start_new_session=True, env=_base_env())
        os.close(slave)
        self._master = master
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: every end of the pty's slave closed
                data = b""
            if not data:
                os.close(self._master)
                return
            with self._lock:
                self._output += data

    def take(self) -> str:
        """What it printed since the last call."""
        with self._lock:
            data = bytes(self._output)
            self._output.clear()
        return data.decode(errors="replace").replace("\r\n", "\n")

    def finish(self, timeout: float = SETTLE) -> int:
        """Wait for it to end and for its last output; its exit status."""
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        return status

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Signal its process group (it has a session of its own), then wait."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            try:
                self.process.wait(SETTLE)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._reader.join(SETTLE)


def _base_env() -> dict[str, str]:
    drop = ("XENSTORED_PATH", "XENSTORED_RUNDIR", "PYTHONPATH", "COLUMNS", "LINES")
    return {key: value for key, value in os.environ.items() if key not in drop}


class Reader:
    """The reader at two terminals: the daemon's (first) and the one typing the tour."""

    def __init__(self, root: Path, tools: Path | None) -> None:
        self.root = root
        self.env_file = root / ".tour-env"
        self.env_file.write_text("")
        #: PATH's head for the C tools' run, put back before every command.
        self.tools = tools
        self.daemon: Job | None = None
        self.background: list[Job] = []
        self.python_imports: list[str] = []
        self.mismatches: list[str] = []

    def _script(self, command: str, save_env: bool) -> str:
        prelude = f"cd {self.root}\nsource {self.env_file}\n"
        if self.tools is not None:
            prelude += f'export PATH="{self.tools}:$PATH"\n'
        if not save_env:
            return f"{prelude}exec {command}\n"
        return f"{prelude}{command}\n__rc=$?\nexport -p > {self.env_file}\nexit $__rc\n"

    def _output(self, foreground: Job | None, expected: int, jobs: list[Job]) -> str:
        """The output of the command and of ``jobs`` running on, once it has settled."""
        text = ""
        if foreground is not None:
            foreground.finish()
            text = foreground.take()
        deadline = time.monotonic() + SETTLE
        while True:
            for job in jobs:
                text += job.take()
            if text.count("\n") >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(0.2)  # anything more than the README shows comes now
        return text + "".join(job.take() for job in jobs)

    def type(self, command: Command) -> None:
        line = _strip_comment(command.line)
        foreground = None
        if line.startswith("scripts/run-daemon"):
            if self.daemon is not None:  # Ctrl-C in the first terminal
                self.daemon.stop(signal.SIGINT)
            self.daemon = Job(self._script(line, False), self.root)
            got = self._output(None, len(command.expected), [self.daemon])
        else:
            if line.endswith("&"):
                self.background.append(Job(self._script(line[:-1].strip(), False), self.root))
            else:
                foreground = Job(self._script(line, True), self.root)
            got = self._output(foreground, len(command.expected), self.background)
        if self.daemon is not None:
            self.daemon.take()  # the first terminal's, not the reader's
        got = got.replace(str(self.root), DOC_ROOT)
        if got.splitlines() != command.expected:
            self.mismatches.append(f"$ {command.line}\n  README: {command.expected}\n"
                                   f"  got:    {got.splitlines()}")

    def run_python(self, code: str) -> None:
        imports = [line for line in code.splitlines() if line.startswith(("from ", "import "))]
        script = self.root / f"block{len(self.python_imports)}.py"
        script.write_text("\n".join(self.python_imports) + "\n" + code)
        self.python_imports.extend(imports)
        job = Job(self._script(f"python {script}", False), self.root)
        printed = ""
        deadline = time.monotonic() + SETTLE
        # A block that runs on (a watch) prints its first event at once; one that ends
        # ends within the deadline.
        while job.process.poll() is None and time.monotonic() < deadline:
            printed += job.take()
            if "\n" in printed:
                time.sleep(PYTHON_RUNS_ON)
                break
            time.sleep(0.02)
        if job.process.poll() is None:
            job.stop()
            printed += job.take()
            if not printed.strip() or "Traceback" in printed:
                self.mismatches.append(f"python block running on:\n{code}\n  printed: {printed}")
            return
        status = job.finish()
        printed += job.take()
        if status != 0 or printed:
            self.mismatches.append(f"python block:\n{code}\n  exit {status}, printed: {printed}")

    def leave(self) -> None:
        for job in [*self.background, *([self.daemon] if self.daemon else [])]:
            job.stop()


def _c_tools(directory: Path) -> Path:
    """A directory of Debian's C tools under their own names (Xen's real control)."""
    c_dir = helpers.c_tools_dir()
    if c_dir is None:
        reason = "Debian's C tools are not installed (apt install xenstore-utils)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    directory.mkdir()
    for name in os.listdir(c_dir):
        if name == "xenstore" or name.startswith("xenstore-"):
            (directory / name).symlink_to(os.path.join(c_dir, name))
    control = directory / "xenstore-control"
    control.unlink(missing_ok=True)
    if os.path.exists(C_CONTROL):
        control.symlink_to(C_CONTROL)
    return directory


def _clone(root: Path) -> None:
    """The clone as the tour sees it: .venv, and scripts/run-daemon minus the venv's set-up."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "pyxenstored").exists():
        pytest.skip(f"the package's commands are not installed in {venv} (pip install -e .)")
    (root / ".venv").symlink_to(venv)
    (root / "scripts").mkdir()
    real = (REPO / "scripts" / "run-daemon").read_text().splitlines(keepends=True)
    kept = [line for line in real if " -m venv " not in line and " -m pip " not in line]
    assert len(kept) == len(real) - 2, "scripts/run-daemon no longer sets up .venv as expected"
    stand_in = root / "scripts" / "run-daemon"
    stand_in.write_text("".join(kept))
    stand_in.chmod(0o755)


@pytest.fixture
def root() -> Iterator[Path]:
    directory = Path(short_tempdir("tour"))  # short: the daemon's socket lives below it
    try:
        _clone(directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("tools", ["ours", "c"])
def test_the_tour_prints_what_the_readme_shows(root: Path, tools: str) -> None:
    reader = Reader(root, _c_tools(root / "c-tools") if tools == "c" else None)
    blocks = tour()
    assert sum(len(block.commands) for block in blocks) > 15, "the tour has gone missing"
    try:
        for block in blocks:
            if block.kind == "python":
                reader.run_python(block.text)
            for command in block.commands:
                reader.type(command)
    finally:
        reader.leave()
    assert reader.mismatches == [], "\n".join(reader.mismatches)
