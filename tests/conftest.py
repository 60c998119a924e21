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
import tempfile
from collections.abc import Iterator

import pytest

from xenstore import compiled
from xenstore.testing import spawn
from xsref import launcher


def pytest_report_header() -> str:
    return f"xenstore: the daemon's core: {compiled.describe()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = compiled.stale()
    if stale:  # the tests would test code that is no longer written anywhere
        pytest.exit(compiled.stale_message(stale), returncode=4)


def short_tempdir(prefix: str = "xs") -> str:
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class OurDaemon:
    """``python -m xenstore.daemon`` in a subprocess, ready when it printed its pid.

    Started by :func:`xenstore.testing.spawn`, the one way to start it; this
    adds a fresh short directory of its own (removed by :meth:`stop`), with
    None in the flags standing for it (``OurDaemon("--domain-dir", None)``).
    """

    def __init__(self, *extra: str | None, module: str = "xenstore.daemon") -> None:
        self.directory = short_tempdir()
        self.socket_path = os.path.join(self.directory, "socket")
        flags = [self.directory if flag is None else flag for flag in extra]
        self.stderr_path = os.path.join(self.directory, "stderr")
        #: What it logged, kept by stop() (its directory goes).
        self.stderr_text = ""
        try:
            self.spawned = spawn(self.socket_path, flags, stderr_path=self.stderr_path,
                                 module=module)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.process = self.spawned.process
        self.pid = self.spawned.pid

    def stderr(self) -> str:
        if os.path.exists(self.stderr_path):
            return self.spawned.stderr()
        return self.stderr_text  # stopped already: what it said was kept

    def stop(self) -> int:
        """Stop the daemon (SIGTERM, by PID); keep what it logged in ``stderr_text``."""
        status = self.spawned.stop()
        self.stderr_text = self.stderr()
        shutil.rmtree(self.directory, ignore_errors=True)
        return status


@pytest.fixture
def our_daemon() -> Iterator[OurDaemon]:
    daemon = OurDaemon()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def daemon() -> Iterator[OurDaemon]:
    """Our daemon serving guests too: a socket for each domain, in its own directory."""
    started = OurDaemon("--domain-dir", None)
    try:
        yield started
    finally:
        started.stop()


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
