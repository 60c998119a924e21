"""pyxenstored as a process: readiness, signals, socket file, flags, framing."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OurDaemon, short_tempdir
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, encode_parts
from xenstore.protocol.ops import Op


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def replies(sock: socket.socket, count: int) -> list[Packet]:
    framer = Framer()
    got: list[Packet] = []
    while len(got) < count:
        data = sock.recv(65536)
        assert data, "connection closed early"
        got += framer.feed(data)
    return got


def test_ready_means_listening_and_sigterm_cleans_up() -> None:
    directory = short_tempdir()
    sock_path = os.path.join(directory, "socket")
    pid_file = os.path.join(directory, "pid")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xenstore.daemon", "--socket", sock_path,
         "-F", pid_file, "-P", "-N"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout and proc.stderr
    pid = int(proc.stdout.readline())
    assert pid == proc.pid
    # When -P prints, the socket already accepts and the pid file exists.
    assert Client(sock_path).read("/tool/xenstored") == b""
    assert Path(pid_file).read_text() == f"{pid}\n"
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    os.kill(pid, signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not os.path.exists(sock_path)
    assert not os.path.exists(pid_file)
    assert f"listening on {sock_path}" in proc.stderr.read()


def test_sigint_also_stops_cleanly(our_daemon: OurDaemon) -> None:
    os.kill(our_daemon.pid, signal.SIGINT)
    assert our_daemon.process.wait(10) == 0
    assert not os.path.exists(our_daemon.socket_path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_a_busy_daemon_cleanly(signum: int) -> None:
    """With clients connected (a watcher, one mid-message, one not reading its
    replies, a guest on its domain socket), a signal still stops the daemon at once:
    status 0, no traceback, every client sees the end, every socket file is gone."""
    daemon = OurDaemon("--domain-dir", None)
    try:
        dom0 = Client(daemon.socket_path, timeout=10)
        dom0.write("/local/domain/5", "")
        dom0.request(Op.INTRODUCE, b"5\x004096\x001\x00")
        guest_path = os.path.join(daemon.directory, "5")
        guest = connect(guest_path)
        guest.sendall(encode(Packet(Op.WATCH, 1, 0, b"@releaseDomain\0r\0")))
        watcher = connect(daemon.socket_path)
        watcher.sendall(encode(Packet(Op.WATCH, 1, 0, b"/w\0t\0")))
        half = connect(daemon.socket_path)
        half.sendall(encode(Packet(Op.WRITE, 1, 0, b"/half\0value"))[:-3])
        dom0.write("/big", "v" * 4000)
        hog = connect(daemon.socket_path)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            hog.sendall(encode(Packet(Op.READ, 1, 0, b"/big\0")) * 2000)
        hog.settimeout(10)
        assert replies(watcher, 2)[0] == Packet(Op.WATCH, 1, 0, b"OK\0")
        os.kill(daemon.pid, signum)
        assert daemon.process.wait(10) == 0
        for sock in (guest, watcher, half, hog):
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(65536):
                    pass  # what was sent before the end, then EOF
        assert not os.path.exists(daemon.socket_path)
        assert not os.path.exists(guest_path)
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.stderr_text


def test_sd_notify_ready() -> None:
    directory = short_tempdir()
    notify_path = os.path.join(directory, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xenstore.daemon", "--socket", os.path.join(directory, "s")],
        env={**os.environ, "NOTIFY_SOCKET": notify_path},
        stderr=subprocess.DEVNULL,
    )
    try:
        assert notify.recv(100) == b"READY=1"
        assert Client(os.path.join(directory, "s")).read("/tool") == b""
    finally:
        proc.terminate()
        proc.wait(10)
        notify.close()


def test_stale_socket_file_is_replaced_and_mode_is_configurable() -> None:
    directory = short_tempdir()
    sock_path = os.path.join(directory, "socket")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # leaves the file behind, as a crashed daemon would
    proc = subprocess.Popen(
        [sys.executable, "-m", "xenstore.daemon", "--socket", sock_path, "--socket-mode", "660",
         "-P"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip().isdigit()
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
        assert Client(sock_path).read("/tool") == b""
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_live_daemons_socket_is_never_taken_over(our_daemon: OurDaemon) -> None:
    """A second daemon on the socket of a running one refuses to start (exit 3, a
    clear message) and leaves the socket alone; the first goes on serving."""
    Client(our_daemon.socket_path).write("/first", "still here")
    before = os.stat(our_daemon.socket_path).st_ino
    second = subprocess.run(
        [sys.executable, "-m", "xenstore.daemon", "--socket", our_daemon.socket_path, "-P"],
        capture_output=True, text=True, timeout=30)
    assert second.returncode == 3
    assert second.stdout == ""  # no pid printed: it never listened
    assert "another daemon is running and answers on this socket" in second.stderr
    assert our_daemon.socket_path in second.stderr
    assert os.stat(our_daemon.socket_path).st_ino == before
    assert Client(our_daemon.socket_path).read("/first") == b"still here"


def test_a_guest_socket_of_another_daemon_is_not_taken_over() -> None:
    """The same for domain sockets: INTRODUCE still answers OK (the domain exists),
    the live socket stays its owner's, and the log says why this one has none."""
    first = OurDaemon("--domain-dir", None)
    second = OurDaemon("--domain-dir", first.directory)  # the same directory: a mistake
    try:
        Client(first.socket_path).request(Op.INTRODUCE, b"4\x004096\x001\x00")
        owner = os.stat(os.path.join(first.directory, "4")).st_ino
        Client(second.socket_path).request(Op.INTRODUCE, b"4\x004096\x001\x00")
        assert os.stat(os.path.join(first.directory, "4")).st_ino == owner
        assert "domain 4: cannot listen" in second.stderr()
        assert "a running daemon answers on it" in second.stderr()
    finally:
        second.stop()
        first.stop()


def test_sighup_reopens_the_trace_and_log_files() -> None:
    """As cxenstored on SIGHUP: files moved away (logrotate) are opened afresh at their
    paths, and the daemon goes on (a HUP used to kill it, leaving a dead socket)."""
    directory = short_tempdir()
    trace, log = os.path.join(directory, "trace"), os.path.join(directory, "log")
    daemon = OurDaemon("-T", trace, "--log-file", log, "-V")
    try:
        Client(daemon.socket_path).write("/before", "1")
        os.rename(trace, trace + ".1")
        os.rename(log, log + ".1")
        os.kill(daemon.pid, signal.SIGHUP)
        with Client(daemon.socket_path, timeout=10) as xs:
            for _ in range(200):  # the signal is handled soon, not at once
                if os.path.exists(trace) and os.path.exists(log):
                    break
                xs.read("/before")
            xs.write("/after", "2")
        assert daemon.process.poll() is None
    finally:
        daemon.stop()
    assert " WRITE (/before 1)" in Path(trace + ".1").read_text()
    rotated = Path(trace).read_text()
    assert " WRITE (/after 2)" in rotated and " WRITE (/before 1)" not in rotated
    assert "reopened the trace and log files on SIGHUP" in Path(log).read_text()
    assert " INFO pyxenstored: " in Path(log).read_text()  # times and levels in the file


def test_too_long_socket_path_is_a_clear_error() -> None:
    path = "/tmp/" + "x" * 120 + "/socket"
    proc = subprocess.run(
        [sys.executable, "-m", "xenstore.daemon", "--socket", path],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "longer than 107 bytes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_flags_of_later_features_warn() -> None:
    directory = short_tempdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xenstore.daemon", "--socket", os.path.join(directory, "s"),
         "-P", "-q", "memory=100", "-w", "watch-event=20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout and proc.stderr
    assert proc.stdout.readline().strip().isdigit()
    proc.terminate()
    proc.wait(10)
    err = proc.stderr.read()
    assert "-q/--quota-soft" in err and "not implemented yet" in err
    assert "-w/--timeout" in err


def test_trace_file_in_cxenstored_format() -> None:
    directory = short_tempdir()
    trace = os.path.join(directory, "trace")
    daemon = OurDaemon("-T", trace)
    try:
        Client(daemon.socket_path).write("/a", b"x y")
    finally:
        daemon.stop()
    lines = Path(trace).read_text().splitlines()
    assert any(line.startswith("CREATE connection 0x") for line in lines)
    ins = [line for line in lines if line.startswith("IN ")]
    outs = [line for line in lines if line.startswith("OUT ")]
    assert ins[0].endswith(" WRITE (/a x y)")
    assert outs[0].endswith(" WRITE (OK )")


def test_pipelined_requests_answered_in_order_with_ids(our_daemon: OurDaemon) -> None:
    sock = connect(our_daemon.socket_path)
    burst = b"".join(
        encode_parts(Op.WRITE if i % 2 else Op.READ, 1000 + i, 0,
                     b"/p\0v" if i % 2 else b"/tool\0")
        for i in range(200)
    )
    sock.sendall(burst)
    got = replies(sock, 200)
    assert [p.req_id for p in got] == [1000 + i for i in range(200)]
    assert all(p.op == (Op.WRITE if p.req_id % 2 else Op.READ) for p in got)


def test_trickled_bytes_and_zero_length_payload(our_daemon: OurDaemon) -> None:
    sock = connect(our_daemon.socket_path)
    message = encode(Packet(Op.READ, 42, 0, b"/tool\0"))
    for i in range(len(message)):
        sock.send(message[i : i + 1])
    sock.send(encode(Packet(Op.READ, 43, 0, b"")))  # answered, not waited on
    got = replies(sock, 2)
    assert got[0] == Packet(Op.READ, 42, 0, b"")
    assert got[1] == Packet(Op.ERROR, 43, 0, b"EINVAL\0")


@pytest.mark.parametrize("length", [4097, 0xFFFFFFFF])
def test_oversized_header_closes_only_that_connection(our_daemon: OurDaemon, length: int) -> None:
    bad = connect(our_daemon.socket_path)
    good = connect(our_daemon.socket_path)
    # A request before the bad header in the same write is still answered.
    bad.sendall(encode(Packet(Op.READ, 1, 0, b"/tool\0")) + encode_parts(Op.READ, 2, 0, b"")[:12]
                + length.to_bytes(4, "little"))
    framer = Framer()
    got: list[Packet] = []
    while data := bad.recv(65536):
        got += framer.feed(data)
    assert got == [Packet(Op.READ, 1, 0, b"")]  # then EOF: closed
    good.sendall(encode(Packet(Op.READ, 3, 0, b"/tool\0")))
    assert replies(good, 1) == [Packet(Op.READ, 3, 0, b"")]


def test_client_closing_mid_message_leaves_the_tree_alone(our_daemon: OurDaemon) -> None:
    sock = connect(our_daemon.socket_path)
    sock.sendall(encode(Packet(Op.WRITE, 1, 0, b"/half\0value"))[:-3])
    sock.close()
    client = Client(our_daemon.socket_path)
    assert not client.exists("/half")
    assert client.directory("/") == ["tool"]
