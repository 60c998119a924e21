"""Shared fixtures: our daemon as a real process, and the reference C daemon.

Socket paths are limited to 107 bytes, so daemons get short directories
under /tmp rather than pytest's deep tmp_path.

The reference daemon (Xen's C xenstored) needs root and Debian's
xen-utils-4.17; tests that use it skip with the reason when it cannot run,
except when ``XS_REQUIRE_REFERENCE=1`` (CI sets it), where that is a failure:
CI must exercise the reference for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from xenstore.reference import launcher


def short_tempdir(prefix: str = "xs") -> str:
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class OurDaemon:
    """``python -m xenstore.daemon`` in a subprocess, ready when it printed its pid."""

    def __init__(self, *extra: str | None, module: str = "xenstore.daemon") -> None:
        self.directory = short_tempdir()
        self.socket_path = os.path.join(self.directory, "socket")
        # None in the flags stands for the daemon's own directory (e.g. --domain-dir).
        flags = [self.directory if flag is None else flag for flag in extra]
        # stderr goes to a file: a pipe nobody drains could stall a chatty daemon.
        self.stderr_path = os.path.join(self.directory, "stderr")
        self.stderr_text = ""
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "--socket", self.socket_path, "-P",
                 *flags],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # -P: printed once the socket listens
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"daemon did not start: {self.stderr_text}")
        self.pid = int(line)

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as stderr:
                return stderr.read().decode(errors="replace")
        except FileNotFoundError:  # stopped already: what it said was kept
            return self.stderr_text

    def stop(self) -> int:
        """Stop the daemon (SIGTERM, by PID); keep what it logged in ``stderr_text``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr_text = self.stderr()
        if self.process.stdout:
            self.process.stdout.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode


@pytest.fixture
def our_daemon() -> Iterator[OurDaemon]:
    daemon = OurDaemon()
    try:
        yield daemon
    finally:
        daemon.stop()


def reference_daemon(kind: str) -> Iterator[launcher.ReferenceDaemon]:
    """Start a reference daemon (``c`` or ``o``) for the duration of the iteration."""
    try:
        launcher.check_available(kind)
    except launcher.ReferenceUnavailable as exc:
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"reference daemon required but unavailable: {exc}")
        pytest.skip(f"reference daemon unavailable: {exc}")
    directory = short_tempdir("xsref")
    daemon = launcher.start(kind, directory)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def ref_daemon() -> Iterator[launcher.ReferenceDaemon]:
    """Xen's C xenstored 4.17, fresh for each test."""
    yield from reference_daemon("c")


def daemon_socket(ours: bool) -> Iterator[str]:
    """The socket path of a fresh daemon, ours or the reference, for the iteration."""
    if ours:
        daemon = OurDaemon()
        try:
            yield daemon.socket_path
        finally:
            daemon.stop()
    else:
        for ref in reference_daemon("c"):
            yield ref.socket_path


@pytest.fixture(params=["ours", "cxenstored"])
def any_daemon(request: pytest.FixtureRequest) -> Iterator[str]:
    """The socket path of our daemon, then of the reference: same test, both daemons."""
    yield from daemon_socket(request.param == "ours")
