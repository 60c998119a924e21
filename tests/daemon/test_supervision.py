"""Supervision: a bug in any part of the daemon costs that part alone.

Each test runs the real daemon as a process with one injected fault
(:mod:`tests.daemon.faults`: the part raises once), drives it over real sockets
to the failing part, and checks that the log says what happened (at ERROR, with
the traceback) and that the daemon goes on serving dom0 and a guest on its
domain socket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import OurDaemon
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

DEADLINE = 10.0


class FaultyDaemon(OurDaemon):
    """The daemon with the fault named by ``$XS_FAULT``, logging to a file too."""

    def __init__(self) -> None:
        self.log_file = f"/tmp/xs-fault-{os.getpid()}-{os.environ['XS_FAULT']}.log"
        super().__init__("-V", "--domain-dir", None, "--log-file", self.log_file,
                         module="tests.daemon.faults")

    def stop(self) -> int:
        for path in (self.log_file, self.log_file + ".1"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return super().stop()


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], FaultyDaemon]]:
    started: list[FaultyDaemon] = []

    def run(fault: str) -> FaultyDaemon:
        monkeypatch.setenv("XS_FAULT", fault)
        started.append(FaultyDaemon())
        return started[-1]

    yield run
    for daemon in started:
        daemon.stop()


Start = Callable[[str], FaultyDaemon]


def logged(daemon: FaultyDaemon) -> str:
    with open(daemon.log_file) as log:
        return log.read()


def wait_logged(daemon: FaultyDaemon, *texts: str) -> str:
    """The log once it holds every one of ``texts`` (fails after DEADLINE)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text = logged(daemon)
        if all(t in text for t in texts):
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"log lacks {texts!r}:\n{text}")
        time.sleep(0.02)


def error_with_traceback(text: str, fault: str) -> None:
    assert " ERROR pyxenstored: internal error" in text, text
    assert "Traceback" in text and f"RuntimeError: injected fault: {fault}" in text, text


def introduce(daemon: OurDaemon, domid: int) -> str:
    with Client(daemon.socket_path, timeout=DEADLINE) as dom0:
        home = f"/local/domain/{domid}"
        dom0.write(home, "")
        dom0.set_perms(home, [f"n{domid}", "r0"])
        dom0.request(Op.INTRODUCE, join(str(domid), "4096", "1"))
    return os.path.join(daemon.directory, str(domid))


def still_serving(daemon: OurDaemon, domid: int = 5) -> None:
    """dom0 and guest ``domid`` are both served, and the daemon's state is sound."""
    assert daemon.process.poll() is None, daemon.stderr()
    path = os.path.join(daemon.directory, str(domid))
    if not os.path.exists(path):
        introduce(daemon, domid)
    with Client(path, timeout=DEADLINE) as guest:
        guest.write("name", f"guest{domid}")
        assert guest.read("name") == f"guest{domid}".encode()
    with Client(daemon.socket_path, timeout=DEADLINE) as dom0:
        dom0.write("/dom0", "here")
        assert dom0.read(f"/local/domain/{domid}/name") == f"guest{domid}".encode()
        assert dom0.request(Op.CONTROL, b"check\0") == b"OK\0"


def refused(path: str) -> bool:
    """Connect and ask; True if the connection was dropped instead of answered."""
    try:
        with Client(path, timeout=DEADLINE) as client:
            client.read("/")
    except (OSError, errors.XenStoreError, EOFError):
        return True
    return False


def test_dom0_accept_loop(start: Start) -> None:
    daemon = start("dom0-accept")
    assert refused(daemon.socket_path)  # the connection being handed over when it failed
    text = wait_logged(daemon, "internal error in the accept loop of dom0's socket",
                       "listening again on")
    error_with_traceback(text, "dom0-accept")
    still_serving(daemon)
    # The socket was made again at the same path: the same file name, a new socket.
    assert os.path.exists(daemon.socket_path)


def test_guest_accept_loop(start: Start) -> None:
    daemon = start("guest-accept")
    path = introduce(daemon, 5)
    assert refused(path)
    text = wait_logged(daemon, "internal error in the socket of domain 5",
                       "domain 5: listening again on")
    error_with_traceback(text, "guest-accept")
    still_serving(daemon, 5)


def test_a_failed_guest_listener_of_a_released_domain_is_not_made_again(start: Start) -> None:
    daemon = start("guest-accept")
    path = introduce(daemon, 5)
    with Client(daemon.socket_path, timeout=DEADLINE) as dom0, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
        guest.connect(path)  # its accept fails: the daemon closes it...
        guest.settimeout(DEADLINE)
        assert guest.recv(1) == b""
        dom0.request(Op.RELEASE, join("5"))  # ...and the domain goes before it is made again
    wait_logged(daemon, "internal error in the socket of domain 5")
    time.sleep(0.3)
    assert not os.path.exists(path)
    still_serving(daemon, 6)


def test_a_connections_reader(start: Start) -> None:
    daemon = start("reader")
    assert refused(daemon.socket_path)  # its first request's effects hit the fault
    text = wait_logged(daemon, "internal error serving connection 1 (dom0); it is closed")
    error_with_traceback(text, "reader")
    still_serving(daemon)


def test_a_connections_writer(start: Start) -> None:
    daemon = start("writer")
    with Client(daemon.socket_path, timeout=DEADLINE) as dom0:
        dom0.write("/big", "x" * 4000)
    # 200 pipelined READs of 4 KB, none read: more than the socket takes, so the
    # rest waits in a backlog drained by the connection's writer task.
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(daemon.socket_path)
    hog.sendall(b"".join(encode(Packet(Op.READ, n, 0, b"/big\0")) for n in range(200)))
    text = wait_logged(daemon, "internal error writing to connection")
    error_with_traceback(text, "writer")
    still_serving(daemon)
    hog.close()


def test_a_guests_write_rate(start: Start) -> None:
    daemon = start("write-rate")
    path = introduce(daemon, 5)
    with Client(path, timeout=DEADLINE) as guest:
        guest.write("first", "goes through, unpaced")
        assert guest.read("first") == b"goes through, unpaced"
    text = wait_logged(daemon, "internal error in the write rate of domain 5")
    error_with_traceback(text, "write-rate")
    still_serving(daemon, 5)


def test_a_guests_log_budget(start: Start) -> None:
    daemon = start("log-rate")
    path = introduce(daemon, 5)
    with Client(path, timeout=DEADLINE) as guest:
        guest.write("x", "")
        with pytest.raises(errors.ENOSPC):  # over the permissions quota: a logged refusal
            guest.set_perms("x", ["n5", "r1", "r2", "r3", "r4", "r6"])
    text = wait_logged(daemon, "internal error in the log budget of domain 5",
                       "permissions quota hit")
    error_with_traceback(text, "log-rate")
    still_serving(daemon, 5)


def test_signal_handling(start: Start) -> None:
    daemon = start("signals")
    os.kill(daemon.pid, signal.SIGHUP)
    text = wait_logged(daemon, "internal error in signal handling",
                       "signal handling starts again")
    error_with_traceback(text, "signals")
    still_serving(daemon)
    # Handled again: the next SIGHUP reopens the files, SIGTERM still stops it cleanly.
    os.rename(daemon.log_file, daemon.log_file + ".1")
    os.kill(daemon.pid, signal.SIGHUP)
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(daemon.log_file):
        assert time.monotonic() < deadline, "SIGHUP did not reopen the log file"
        time.sleep(0.02)
    still_serving(daemon)
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.process.wait(DEADLINE) == 0
