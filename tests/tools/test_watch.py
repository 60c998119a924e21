"""xenstore-watch against a daemon: its lines, its messages, its exit status.

Every expectation was taken from Debian's xenstore-utils 4.17 on Xen's C
xenstored and is checked against both tool sets on both daemons (see
conftest.py), except ``-d``, which 4.17 does not have. The watch runs until
it has printed ``-n`` events, so most tests run it as a process: they wait
for its first line (every new watch fires once at once) before changing the
store, read each line with a deadline, and kill it by pid if it is still
running at the end.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import TracebackType

import pytest

from tests.conftest import OurDaemon, reference_daemon, short_tempdir
from tests.tools import helpers
from tests.tools.conftest import Tools
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode_parts
from xenstore.protocol.ops import Op
from xsref import launcher

#: How long a line, or the end of the process, may take to come.
DEADLINE = 15.0

USAGE = b"xenstore-watch: Usage: xenstore-watch [-h] [-n NR] key\n"

BASIC = (("/tt/a", b"1"), ("/tt/c", b"3"))


def unable(path: bytes, depth: int | None = None) -> bytes:
    """The message of a refused watch (C's format ends in "\\n" and errx adds one)."""
    suffix = b"" if depth is None else b" with depth %d" % depth
    return b"xenstore-watch: Unable to add watch on " + path + suffix + b"\n\n"


class Watch:
    """A running ``xenstore-watch`` (or ``xenstore watch``) of one implementation."""

    def __init__(
        self,
        impl: str,
        socket_path: str,
        *args: str,
        tool: str = "watch",
        env: dict[str, str | None] | None = None,
    ) -> None:
        argv, executable = helpers.tool_argv(impl, tool, args)
        self.process = subprocess.Popen(
            argv,
            executable=executable,
            env=helpers.tool_env(socket_path, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
        )
        self.pid = self.process.pid
        self._pending = b""

    def line(self, timeout: float = DEADLINE) -> bytes:
        """The next line of stdout (with its newline); fails after ``timeout`` seconds."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([fd], [], [], max(remaining, 0))
            if not readable:
                pytest.fail(f"no line within {timeout} s (so far: {self._pending!r})")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"stdout ended (so far: {self._pending!r}; {self.stderr()!r})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

    def lines(self, count: int) -> list[bytes]:
        return [self.line() for _ in range(count)]

    def stderr(self) -> bytes:
        """What it wrote on stderr (once it has exited)."""
        if self.process.poll() is None or self.process.stderr is None:
            return b""
        return self.process.stderr.read()

    def finish(self) -> helpers.Result:
        """Wait for it to exit; its status, the rest of stdout, stderr."""
        out, err = self.process.communicate(timeout=DEADLINE)
        return helpers.Result(self.process.returncode, self._pending + out, err)

    def stop(self) -> None:
        """Kill it by pid if it still runs, and close the pipes."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def daemon_name(request: pytest.FixtureRequest) -> str:
    """``pyxenstored`` or ``cxenstored``: which daemon this test runs against."""
    name: str = request.node.callspec.params["xs_socket"]
    return name


# -- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("-h",), ("--help",), ("--he",), ("-s",), ("--",)])
def test_usage(tools: Tools, args: tuple[str, ...]) -> None:
    # 4.17 exits 1 even for -h.
    assert tools.run("watch", *args) == (1, b"", USAGE)


@pytest.mark.parametrize("flag", ["-p", "-R", "-f", "-t", "-u", "-r", "--prefix", "--raw"])
def test_flags_of_other_modes_are_usage_errors(tools: Tools, flag: str) -> None:
    assert tools.run("watch", flag, "-n1", "/tt/a") == (1, b"", USAGE)


def test_help_wins_over_operands(tools: Tools) -> None:
    assert tools.run("watch", "--number", "1", "/tt/a", "--help", "-x") == (1, b"", USAGE)


def test_option_errors(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("watch", "-n") == (
        1,
        b"",
        b"xenstore-watch: option requires an argument -- 'n'\n" + USAGE,
    )
    # An unknown option is reported, and the watch goes on.
    assert tools.run("watch", "-x", "-n1", "/tt/a") == (
        0,
        b"/tt/a\n",
        b"xenstore-watch: invalid option -- 'x'\n",
    )
    assert tools.run("watch", "--nope", "-n1", "/tt/a") == (
        0,
        b"/tt/a\n",
        b"xenstore-watch: unrecognized option '--nope'\n",
    )


@pytest.mark.parametrize(
    ("args", "out"),
    [
        (("-n", "1", "/tt/a"), b"/tt/a\n"),
        (("-n1", "/tt/a"), b"/tt/a\n"),
        (("--number=1", "/tt/a"), b"/tt/a\n"),
        (("--num", "1", "/tt/a"), b"/tt/a\n"),
        (("--n=1", "/tt/a"), b"/tt/a\n"),
        (("/tt/a", "-n", "1"), b"/tt/a\n"),
        (("-s", "-n1", "/tt/a"), b"/tt/a\n"),
        (("-n", "2", "/tt/a", "/tt/c"), b"/tt/a\n/tt/c\n"),
        # The last -n counts.
        (("-n1", "-n", "2", "/tt/a", "/tt/c"), b"/tt/a\n/tt/c\n"),
        # atoi(): 0 and negative counts stop at once (only -1 is "forever"),
        # junk is 0, leading blanks and trailing junk are skipped.
        (("-n0", "/tt/a"), b""),
        (("-n", "-2", "/tt/a"), b""),
        (("-n", "abc", "/tt/a"), b""),
        (("-n", " 3x", "/tt/a", "/tt/c", "/tt/x", "/tt/y"), b"/tt/a\n/tt/c\n/tt/x\n"),
    ],
)
def test_count(tools: Tools, args: tuple[str, ...], out: bytes) -> None:
    tools.reset(*BASIC)
    assert tools.run("watch", *args) == (0, out, b"")


@pytest.mark.parametrize(
    "path",
    [
        "/tt/nonexistent",  # a watch needs no node
        "relative",  # under /local/domain/0, printed as given
        "-x",  # after "--", an operand
        "/",
        "@introduceDomain",
        "@releaseDomain",
    ],
)
def test_first_event_is_the_watched_path(tools: Tools, path: str) -> None:
    assert tools.run("watch", "-n1", "--", path) == (0, path.encode() + b"\n", b"")


@pytest.mark.parametrize(
    "paths",
    [
        ("bad//path",),
        ("",),
        ("/tt/",),
        ("/tt/a", "bad//x"),  # the first watch's event is never printed
        ("/tt/a", "/tt/a"),  # the same path and token twice: EEXIST
        ("/" + "a" * 3000,),
    ],
)
def test_refused_watch(tools: Tools, paths: tuple[str, ...]) -> None:
    tools.reset(*BASIC)
    assert tools.run("watch", "-n", "3", *paths) == (1, b"", unable(paths[-1].encode()))


def test_xs_open_failure(tools: Tools) -> None:
    assert tools.run("watch", "/tt", env={"XENSTORED_PATH": "/nonexistent/socket"}) == (
        1,
        b"",
        b"xenstore-watch: xs_open: No such file or directory\n",
    )


def test_multiplexer(tools: Tools) -> None:
    tools.reset(*BASIC)
    assert tools.run("xenstore", "watch", "-n2", "/tt/a", "/tt/c") == (0, b"/tt/a\n/tt/c\n", b"")
    assert tools.run("xenstore", "watch", "-h") == (
        1,
        b"",
        b"xenstore: Usage: xenstore watch [-h] [-n NR] key\n",
    )
    assert tools.run("xenstore", "-n1", "/tt/a", argv0="/opt/xenstore-watch") == (
        0,
        b"/tt/a\n",
        b"",
    )


# -- events as they come --------------------------------------------------------------------


def test_events_are_printed_and_flushed_one_by_one(tools: Tools, xs_socket: str) -> None:
    tools.reset(*BASIC)
    with Watch(tools.impl, xs_socket, "/tt") as watch, Client(xs_socket, timeout=10) as xs:
        assert watch.line() == b"/tt\n"
        xs.write("/tt/a/b", b"x")
        assert watch.line() == b"/tt/a/b\n"
        # Removing a subtree fires once, with the removed path, for a watch above it.
        xs.rm("/tt/a")
        xs.set_perms("/tt/c", ["n0", "r1"])
        assert watch.lines(2) == [b"/tt/a\n", b"/tt/c\n"]
        # mkdir of an existing node changes nothing and fires nothing.
        xs.mkdir("/tt/c")
        xs.mkdir("/tt/d")
        assert watch.line() == b"/tt/d\n"
        # A transaction's events come at its commit, in order.
        tx = xs.transaction_start()
        xs.write("/tt/t1", b"1", tx)
        xs.write("/tt/t2", b"2", tx)
        xs.transaction_end(tx)
        assert watch.lines(2) == [b"/tt/t1\n", b"/tt/t2\n"]
        # Changes elsewhere do not reach it.
        xs.write("/ttx", b"1")
        xs.rm("/ttx")
        xs.write("/tt", b"top")
        assert watch.line() == b"/tt\n"
        assert watch.process.poll() is None


def test_count_ends_the_watch(tools: Tools, xs_socket: str) -> None:
    tools.reset(*BASIC)
    with Watch(tools.impl, xs_socket, "-n", "3", "/tt/a", "relative") as watch:
        assert watch.lines(2) == [b"/tt/a\n", b"relative\n"]
        with Client(xs_socket, timeout=10) as xs:
            xs.write("/local/domain/0/relative/x", b"1")
        assert watch.finish() == (0, b"relative/x\n", b"")


def test_many_events_in_order(tools: Tools, xs_socket: str) -> None:
    tools.reset(*BASIC)
    with Watch(tools.impl, xs_socket, "-n", "301", "/tt") as watch:
        assert watch.line() == b"/tt\n"
        with Client(xs_socket, timeout=10) as xs:
            for i in range(300):
                xs.write(f"/tt/n{i}", b"v")
        expected = b"".join(b"/tt/n%d\n" % i for i in range(300))
        assert watch.finish() == (0, expected, b"")


def test_killed_by_sigpipe_when_its_reader_goes(tools: Tools, xs_socket: str) -> None:
    tools.reset(*BASIC)
    with Watch(tools.impl, xs_socket, "/tt") as watch:
        assert watch.line() == b"/tt\n"
        assert watch.process.stdout is not None
        watch.process.stdout.close()
        with Client(xs_socket, timeout=10) as xs:
            xs.write("/tt/a", b"2")
        assert watch.process.wait(DEADLINE) == -signal.SIGPIPE
        assert watch.stderr() == b""


def test_dies_of_sigint(tools: Tools, xs_socket: str) -> None:
    with Watch(tools.impl, xs_socket, "/tt") as watch:
        assert watch.line() == b"/tt\n"
        os.kill(watch.pid, signal.SIGINT)
        assert watch.process.wait(DEADLINE) == -signal.SIGINT
        assert watch.stderr() == b""


def test_output_errors_are_ignored(tools: Tools, xs_socket: str) -> None:
    tools.reset(*BASIC)
    argv, executable = helpers.tool_argv(tools.impl, "watch", ["-n2", "/tt/a", "/tt/c"])
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            argv,
            executable=executable,
            env=helpers.tool_env(xs_socket),
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=DEADLINE,
            cwd="/",
        )
    assert (proc.returncode, proc.stderr) == (0, b"")


# -- the daemon goes away -------------------------------------------------------------------


class _Daemon:
    """A daemon of the test's own, which it may stop in the middle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ours: OurDaemon | None = None
        self._reference: Iterator[launcher.ReferenceDaemon] | None = None
        if name == "pyxenstored":
            self._ours = OurDaemon()
            self.socket_path = self._ours.socket_path
        else:
            generator = reference_daemon("c")
            ref = next(generator)
            self._reference = generator
            self.socket_path = ref.socket_path

    def stop(self) -> None:
        """Stop it (again: nothing happens)."""
        if self._ours is not None:
            self._ours.stop()
            self._ours = None
        if self._reference is not None:
            with contextlib.suppress(StopIteration):
                next(self._reference)
            self._reference = None


@pytest.fixture(params=["pyxenstored", "cxenstored"])
def own_daemon(request: pytest.FixtureRequest) -> Iterator[_Daemon]:
    if os.environ.get("XS_TEST_SOCKET"):
        pytest.skip("needs a daemon of its own to stop")
    daemon = _Daemon(request.param)
    try:
        yield daemon
    finally:
        daemon.stop()


def test_lost_connection_uses_up_the_count(impl: str, own_daemon: _Daemon) -> None:
    # Every xs_read_watch() fails at once once the connection is gone, and
    # each failure counts: C exits 0 without another line.
    with Watch(impl, own_daemon.socket_path, "-n", "5", "/tt") as watch:
        assert watch.line() == b"/tt\n"
        own_daemon.stop()
        assert watch.finish() == (0, b"", b"")


def test_lost_connection_without_count(own_daemon: _Daemon) -> None:
    # C spins on the failing read forever; ours exits 1 (only ours is run).
    with Watch("ours", own_daemon.socket_path, "/tt") as watch:
        assert watch.line() == b"/tt\n"
        own_daemon.stop()
        assert watch.finish() == (1, b"", b"")


# -- -d DEPTH: newer than 4.17 ------------------------------------------------------------


def test_depth_is_not_in_4_17(tools: Tools, request: pytest.FixtureRequest) -> None:
    """4.17's tool has no -d; ours sends the depth, which 4.17's daemon refuses."""
    tools.reset(*BASIC)
    result = tools.run("watch", "-d", "1", "-n", "1", "/tt/a")
    if tools.impl == "c":
        # "1" is an operand then, and the first watch to fire.
        assert result == (0, b"1\n", b"xenstore-watch: invalid option -- 'd'\n")
    elif daemon_name(request) == "cxenstored":
        assert result == (1, b"", unable(b"/tt/a", 1))
    else:
        assert result == (0, b"/tt/a\n", b"")


def test_depth_only_for_watch(tools: Tools) -> None:
    # The other modes keep 4.17's table, where -d and --depth are unknown.
    tools.reset(*BASIC)
    assert tools.run("read", "-d", "/tt/a") == (
        0,
        b"1\n",
        b"xenstore-read: invalid option -- 'd'\n",
    )
    assert tools.run("read", "--depth=1", "/tt/a") == (
        0,
        b"1\n",
        b"xenstore-read: unrecognized option '--depth=1'\n",
    )


def test_depth_limits_the_events(our_daemon: OurDaemon) -> None:
    # Only our daemon: 4.17's has no depth (see test_depth_is_not_in_4_17).
    xs_socket = our_daemon.socket_path
    helpers.reset(xs_socket, BASIC)
    with Watch("ours", xs_socket, "--depth", "1", "/tt") as watch, Client(xs_socket) as xs:
        assert watch.line() == b"/tt\n"
        xs.write("/tt/a/deep", b"x")  # two levels down: not heard
        xs.write("/tt/a", b"2")
        assert watch.line() == b"/tt/a\n"
    with Watch("ours", xs_socket, "-d0", "/tt") as watch, Client(xs_socket) as xs:
        assert watch.line() == b"/tt\n"
        xs.write("/tt/c", b"4")
        xs.write("/tt", b"5")
        assert watch.line() == b"/tt\n"
    # A negative depth is an ordinary watch.
    with Watch("ours", xs_socket, "-d", "-1", "/tt") as watch, Client(xs_socket) as xs:
        assert watch.line() == b"/tt\n"
        xs.write("/tt/a/deep", b"y")
        assert watch.line() == b"/tt/a/deep\n"


def test_depth_wire_request() -> None:
    """-d sends WATCH with the depth as a third field, as xs_watch_depth() does."""
    directory = short_tempdir()
    path = os.path.join(directory, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(DEADLINE)
    try:
        with Watch("ours", path, "-n0", "-d", "007", "/tt") as watch:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(DEADLINE)
                framer = Framer()
                packets: list[Packet] = []
                while not packets:
                    packets = framer.feed(conn.recv(4096))
                assert (packets[0].op, packets[0].payload) == (Op.WATCH, b"/tt\0/tt\x007\0")
                conn.sendall(encode_parts(Op.WATCH, packets[0].req_id, 0, b"OK\0"))
                assert watch.finish() == (0, b"", b"")
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- packaging --------------------------------------------------------------------------------


def test_imports_neither_trio_nor_construct() -> None:
    code = (
        "import sys; import xenstore.tools.watch as m; m.main; "
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('trio', 'construct')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("xenstore-watch") == "xenstore.tools.watch:main"
