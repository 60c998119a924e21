"""The daemon's log: times and levels, connections at -V, a file, syslog.

The start-up lines (where it listens, what to export) stay as they were, for
people; every logged line carries its time and level.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import OurDaemon, short_tempdir
from xenstore.client import Client

#: A logged line on stderr or in --log-file: time, level, name, message.
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                  r"pyxenstored: \S")
STARTUP = re.compile(r"^pyxenstored: (listening on /\S+|point clients at it with: export "
                     r"XENSTORED_PATH=/\S+)$")


def _wait_for(daemon: OurDaemon, text: str) -> str:
    deadline = time.monotonic() + 10
    while text not in (log := daemon.stderr()):
        assert time.monotonic() < deadline, log
        time.sleep(0.02)
    return log


def test_verbose_logs_each_connection_with_its_domain_and_every_line_its_time() -> None:
    daemon = OurDaemon("-V", "--domain-dir", None)
    try:
        with Client(daemon.socket_path) as xs:
            xs.write("/local/domain/4", "")
            xs.set_perms("/local/domain/4", ["n4"])
            xs.introduce_domain(4)
        with Client(os.path.join(daemon.directory, "4")) as guest:
            guest.write("x", "1")
        log = _wait_for(daemon, "connection 2 (domain 4): disconnected")
    finally:
        daemon.stop()
    lines = log.splitlines()
    assert [line for line in lines if not (LINE.match(line) or STARTUP.match(line))] == []
    assert sum(bool(STARTUP.match(line)) for line in lines) == 2
    messages = [line.split(" pyxenstored: ", 1)[1] for line in lines if LINE.match(line)]
    for who in ("connection 1 (dom0)", "connection 2 (domain 4)"):
        assert [m for m in messages if m.startswith(who)] == [
            f"{who}: connected", f"{who}: disconnected"]
    assert any(line.startswith(tuple("0123456789")) and " INFO " in line for line in lines)


def test_without_verbose_connections_are_not_logged() -> None:
    daemon = OurDaemon()
    try:
        Client(daemon.socket_path).close()
        with Client(daemon.socket_path) as xs:
            xs.read("/")
    finally:
        daemon.stop()
    assert "connected" not in daemon.stderr()


def test_syslog_gets_the_lines_with_their_priority() -> None:
    directory = short_tempdir()
    address = os.path.join(directory, "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(address)
        syslog.settimeout(10)
        daemon = OurDaemon("-V", f"--syslog={address}")
        try:
            with Client(daemon.socket_path) as xs:
                xs.read("/")
            received = []
            while not any(b"disconnected" in line for line in received):
                received.append(syslog.recv(4096))
        finally:
            daemon.stop()
    # <30>: facility daemon (3) * 8 + priority info (6).
    assert f"<30>pyxenstored[{daemon.pid}]: INFO connection 1 (dom0): connected\0".encode() \
        in received
    assert LINE.match(daemon.stderr().splitlines()[0])  # stderr goes on as well


def test_syslog_that_nobody_listens_to_is_a_clear_error() -> None:
    directory = short_tempdir()
    proc = subprocess.run(
        [sys.executable, "-m", "xenstore.daemon", "--socket", os.path.join(directory, "s"),
         f"--syslog={directory}/nowhere"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == (f"pyxenstored: cannot log to syslog at {directory}/nowhere: "
                           "[Errno 2] No such file or directory\n")


def test_the_log_file_has_the_same_lines() -> None:
    directory = short_tempdir()
    path = Path(directory, "log")
    daemon = OurDaemon("-V", "--log-file", str(path))
    try:
        Client(daemon.socket_path).close()
        _wait_for(daemon, "disconnected")
    finally:
        daemon.stop()
    logged = [line for line in daemon.stderr().splitlines() if LINE.match(line)]
    assert path.read_text().splitlines() == logged
