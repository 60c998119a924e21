"""Our daemon's side of ``live-update -s`` when the new binary cannot run: it says so and
goes on serving the same connections, with nothing left in its run directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.conftest import short_tempdir
from xenstore.client import Client
from xenstore.daemon.spawn import spawn


def test_a_binary_that_cannot_be_exec_d_is_answered_and_survived() -> None:
    directory = Path(short_tempdir("xslx"))
    socket_path = str(directory / "socket")
    binary = directory / "not-a-program"
    binary.write_bytes(b"\x7fELF nonsense")
    binary.chmod(0o700)
    env = {**os.environ, "XENSTORED_RUNDIR": str(directory)}
    daemon = spawn(socket_path, stderr_path=str(directory / "stderr"), env=env)
    try:
        with Client(socket_path) as control, Client(socket_path) as other:
            other.write("/kept", b"v")
            other.watch("/kept", "t")
            assert control.control("live-update", "-f", str(binary)) == b"OK\0"
            assert control.control("live-update", "-s", "-t", "5") == (
                b"Error activating new binary.\0")
            assert daemon.process.poll() is None
            assert not (directory / "state_dump").exists()
            assert other.read_watch(timeout=5) == ("/kept", "t")
            other.write("/kept", b"w")
            assert other.read_watch(timeout=5) == ("/kept", "t")
            assert control.read("/kept") == b"w"
            with Client(socket_path) as fresh:  # still accepting
                assert fresh.read("/kept") == b"w"
            # A new session may begin.
            assert control.control("live-update", "-f", str(binary)) == b"OK\0"
            assert control.control("live-update", "-a") == b"OK\0"
        assert "cannot exec" in daemon.stderr()
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
