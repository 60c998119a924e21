"""Xen's own xenstore test program, ``test-xenstore``, against our daemon.

Debian's xen-utils-4.17 ships Xen's ``tools/tests/xenstore`` as
``/usr/lib/xen-4.17/bin/test-xenstore``. It links libxenstore, so
``XENSTORED_PATH`` points it at a socket; it takes no daemon flags. Its tests
(``-l`` lists them) read and write nodes of 1 and 2000 bytes, list a directory,
remove a node and a subtree, and run empty, read-modify-write (committed and
aborted) and conflicting transactions, all below the relative path
``xenstore-test/<pid>``; it prints one timing line per test, ``NAME: failed (ret
= ERRNO, stage STAGE)`` on the first failure, and exits 3 then (0 when all pass),
after removing its nodes. ``-t NAME`` runs one test, ``-i N`` repeats each, ``-r
SECONDS`` runs randomly chosen tests for that long.

Each test runs on its own (so that one failure does not hide the others), then
all of them, then a random mix, against our daemon and against cxenstored 4.17
as a control. Our daemon traces the wire traffic (``-T``): when a test fails,
the end of the trace is in the failure message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import OurDaemon, reference_daemon, short_tempdir
from xenstore.client import Client

TEST_XENSTORE = Path("/usr/lib/xen-4.17/bin/test-xenstore")
#: Every test of Xen 4.17's test-xenstore, in its order (``test-xenstore -l``).
TESTS = ["read 1", "read 2000", "write 1", "write 2000", "dir", "rm node", "rm dir",
         "ta empty", "ta empty x", "ta rmw", "ta rmw x", "ta err"]
#: Where the program works: its relative TEST_PATH, for dom0.
WORK_DIR = "/local/domain/0/xenstore-test"


def require_program() -> None:
    if not os.access(TEST_XENSTORE, os.X_OK):
        reason = f"{TEST_XENSTORE} is missing (apt install xen-utils-4.17)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Target:
    name: str
    socket_path: str
    trace_path: str | None = None

    def trace_tail(self, lines: int = 80) -> str:
        if self.trace_path is None:
            return "(no trace: the reference daemon)"
        try:
            with open(self.trace_path, "rb") as trace:
                text = trace.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no trace written)"
        # Values of 2000 and 4000 bytes make long lines: shorten them.
        return "\n".join(line[:200] for line in text.splitlines()[-lines:])


@pytest.fixture(scope="module", params=["ours", "cxenstored"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """One daemon for the module's tests (the program cleans up after itself)."""
    require_program()
    if request.param == "ours":
        trace_dir = short_tempdir("xstrace")
        trace_path = os.path.join(trace_dir, "trace")
        daemon = OurDaemon("-T", trace_path)
        try:
            yield Target("ours", daemon.socket_path, trace_path)
        finally:
            daemon.stop()
            shutil.rmtree(trace_dir, ignore_errors=True)
    else:
        for ref in reference_daemon("c"):
            yield Target("cxenstored", ref.socket_path)


def run(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XENSTORED_PATH": target.socket_path,
           "LC_ALL": "C"}
    return subprocess.run([str(TEST_XENSTORE), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def report(target: Target, proc: subprocess.CompletedProcess[str]) -> str:
    return (f"test-xenstore {' '.join(proc.args[1:])} on {target.name}: rc={proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
            f"end of the daemon's trace:\n{target.trace_tail()}")


def timing_lines(stdout: str) -> list[str]:
    """The names of the tests that printed a timing line (i.e. passed)."""
    return [m.group(1).rstrip() for m in re.finditer(r"^(.{10}): (?:avg: )?\d+ ns", stdout,
                                                     re.MULTILINE)]


def assert_cleaned_up(target: Target) -> None:
    with Client(target.socket_path, timeout=10) as xs:
        assert not xs.exists(WORK_DIR), f"test-xenstore left {WORK_DIR}: {xs.directory(WORK_DIR)}"


def test_the_known_tests_are_all_there() -> None:
    require_program()
    proc = subprocess.run([str(TEST_XENSTORE), "-l"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split(":", 1)[0].rstrip() for line in proc.stdout.splitlines()]
    assert listed == TESTS


@pytest.mark.parametrize("name", TESTS, ids=[name.replace(" ", "-") for name in TESTS])
def test_each_test(target: Target, name: str) -> None:
    proc = run(target, "-t", name, "-i", "20")
    assert proc.returncode == 0, report(target, proc)
    assert "failed" not in proc.stdout, report(target, proc)
    # An exhausted retry loop (100 EAGAINs in a row) counts as a pass there: not here.
    assert "Exhaustive" not in proc.stdout, report(target, proc)
    assert timing_lines(proc.stdout) == [name], report(target, proc)
    assert_cleaned_up(target)


def test_all_tests_in_one_run(target: Target) -> None:
    proc = run(target, "-i", "5")
    assert proc.returncode == 0, report(target, proc)
    assert timing_lines(proc.stdout) == TESTS, report(target, proc)
    assert "Exhaustive" not in proc.stdout, report(target, proc)
    assert_cleaned_up(target)


def test_random_mix(target: Target) -> None:
    # Random mode prints nothing unless a test fails or retries were exhausted.
    proc = run(target, "-r", "2", "-i", "3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), report(target, proc)
    assert_cleaned_up(target)
