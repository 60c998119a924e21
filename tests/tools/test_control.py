"""xenstore-control: argv, exit codes, messages, and the CONTROL conversation.

Each test runs with our tool and with Xen's (``impl``), and the tests of a real
daemon run against ours and against cxenstored 4.17 (``xs_socket``). The two
daemons know different CONTROL commands, so what a command prints is either
taken from the daemon in the test (its ``help`` text) or compared with what
Xen's tool prints on the same daemon. The conversations of ``live-update``
and the replies no daemon gives (embedded NULs, hang-ups, BUSY) are pinned
against a scripted daemon (fakexs.py); their goldens were taken from Xen's tool.

Xen's tool is not Debian's /usr/bin/xenstore-control: that is a wrapper that
needs a running hypervisor. The binary itself comes with xen-utils-4.17.

Never run ``live-update`` with a file that exists against cxenstored: it
accepts it and execs that file in place of itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping

import pytest

from tests.tools import helpers
from tests.tools.fakexs import FakeXenstored, Reply, Request, error
from xenstore.client import Client
from xenstore.protocol.ops import Op

CONTROL, READ = Op.CONTROL, Op.READ

#: Where xen-utils-4.17 installs the real binary.
C_CONTROL = "/usr/lib/xen-4.17/bin/xenstore-control"
PROG = "xenstore-control"
USAGE = b"Usage:\nxenstore-control <command> [<arg>...]\n"
NOT_SUPPORTED = b"Command not supported. Valid commands are:\n"
NO_DAEMON = b"Failed to contact Xenstored.\n"
#: What the stubdom path prints on a host without Xen (libxencall, then the tool).
NO_XEN = (
    b"xencall: error: Could not obtain handle on privileged command interface: "
    b"No such file or directory\nxc_interface_open() failed\n"
)


def c_control() -> str | None:
    """Xen's xenstore-control: ``$XS_TEST_C_TOOLS``'s if it is the binary, else xen-utils'."""
    directory = os.environ.get("XS_TEST_C_TOOLS")
    candidates = [os.path.join(directory, PROG)] if directory else []
    for path in [*candidates, C_CONTROL]:
        try:
            with open(path, "rb") as binary:
                if binary.read(4) == b"\x7fELF":  # not Debian's shell wrapper
                    return path
        except OSError:
            continue
    return None


@pytest.fixture(params=["ours", "c"])
def impl(request: pytest.FixtureRequest) -> str:
    """Which tool runs: ours or Xen's (this module's own: Xen's lives elsewhere)."""
    name: str = request.param
    if name == "c" and c_control() is None:
        reason = "Xen's xenstore-control is not installed (apt install xen-utils-4.17)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return name


def run(
    impl: str,
    socket_path: str | None,
    *args: str | bytes,
    argv0: str = PROG,
    env: Mapping[str, str | None] | None = None,
) -> helpers.Result:
    """Run ``xenstore-control args`` as ``impl`` against ``socket_path``."""
    if impl == "c":
        path = c_control()
        assert path is not None
        argv: list[str | bytes] = [argv0, *args]
        executable: str | None = path
    else:
        argv, executable = helpers.tool_argv("ours", "control", args, argv0)
    proc = subprocess.run(
        argv,
        executable=executable,
        env=helpers.tool_env(socket_path, env),
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    return helpers.Result(proc.returncode, proc.stdout, proc.stderr)


def daemon_help(socket_path: str) -> bytes:
    """The daemon's answer to ``help``, as C prints it (up to the first NUL)."""
    with Client(socket_path, timeout=10) as client:
        return client.control("help").split(b"\0", 1)[0]


# -- argv and exit codes, on both daemons ------------------------------------------


def test_usage_needs_no_daemon(impl: str) -> None:
    # Checked before connecting: no daemon, still the usage text and exit 2.
    assert run(impl, "/nonexistent") == (2, b"", USAGE)
    assert run(impl, None, env={"XENSTORED_RUNDIR": "/nonexistent"}) == (2, b"", USAGE)


def test_usage_names_argv0_in_full(impl: str, xs_socket: str) -> None:
    assert run(impl, xs_socket, argv0="/opt/bin/xenstore-control") == (
        2,
        b"",
        b"Usage:\n/opt/bin/xenstore-control <command> [<arg>...]\n",
    )


@pytest.mark.parametrize("args", [("help",), ("live-update",), ("live-update", "-c")])
def test_no_daemon(impl: str, args: tuple[str, ...]) -> None:
    # live-update's arguments are only looked at once connected.
    assert run(impl, "/nonexistent", *args) == (1, b"", NO_DAEMON)


@pytest.mark.parametrize("path", ["", "/tmp", "/nonexistent/socket"])
def test_no_daemon_at_odd_paths(impl: str, path: str) -> None:
    assert run(impl, path, "help") == (1, b"", NO_DAEMON)


def test_device_that_never_answers(impl: str) -> None:
    # Not a socket: opened as the xenbus device; reading it gives EOF, EBADF.
    assert run(impl, "/dev/null", "help") == (
        3,
        b"",
        b"Error 9 when trying to execute command.\n",
    )


def test_rundir_is_honoured(impl: str, xs_socket: str) -> None:
    if os.path.basename(xs_socket) != "socket":
        pytest.skip("the daemon's socket is not named 'socket'")
    env = {"XENSTORED_PATH": None, "XENSTORED_RUNDIR": os.path.dirname(xs_socket)}
    assert run(impl, None, "help", env=env) == (0, daemon_help(xs_socket) + b"\n", b"")


def test_help(impl: str, xs_socket: str) -> None:
    text = daemon_help(xs_socket)
    assert text.startswith(b"help\t\n") or text.endswith(b"help\t\n")
    assert run(impl, xs_socket, "help") == (0, text + b"\n", b"")


# Both daemons answer EINVAL to a command they do not know, or to known ones
# given arguments they do not take; the tool then asks for help.
@pytest.mark.parametrize(
    "args",
    [("nonsense",), ("",), ("HELP",), ("help", "x"), ("help", ""), ("nonsense", "a", "", "b")],
)
def test_unknown_command(impl: str, xs_socket: str, args: tuple[str, ...]) -> None:
    assert run(impl, xs_socket, *args) == (3, b"", NOT_SUPPORTED + daemon_help(xs_socket) + b"\n")


def test_request_size_limit(impl: str, xs_socket: str) -> None:
    # "nonsense\0" + 4086 bytes + "\0" is 4096, the largest payload: sent.
    assert run(impl, xs_socket, "nonsense", "a" * 4086) == (
        3,
        b"",
        NOT_SUPPORTED + daemon_help(xs_socket) + b"\n",
    )
    # A byte more is refused before anything is sent: E2BIG is errno 7.
    assert run(impl, xs_socket, "nonsense", "a" * 4087) == (
        3,
        b"",
        b"Error 7 when trying to execute command.\n",
    )
    assert run(impl, xs_socket, "help", "a" * 4091) == (
        3,
        b"",
        b"Error 7 when trying to execute command.\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), b"Missing binary specification\n"),
        (("-F",), b"Missing binary specification\n"),
        (("-c", "x", "-t", "5", "-F"), b"Missing binary specification\n"),
        (("-c",), b"Missing command line value\n"),
        (("/x", "-c"), b"Missing command line value\n"),
        (("-t",), b"Missing timeout value\n"),
        (("-c", "x", "-t"), b"Missing timeout value\n"),
        (("-t", "-c"), b"Missing binary specification\n"),  # "-c" is the timeout
    ],
)
def test_live_update_usage(
    impl: str, xs_socket: str, args: tuple[str, ...], message: bytes
) -> None:
    assert run(impl, xs_socket, "live-update", *args) == (2, b"", message)


# -- commands whose output depends on the daemon: ours against Xen's, live ----------

SAME_AS_C = [
    ("help",),
    ("check",),
    ("quota",),
    ("quota", "0"),
    ("quota", "1"),
    ("quota", "0", "1"),
    ("quota", "set"),
    ("quota-soft",),
    ("quota-soft", "x"),
    ("log",),
    ("log", "on"),
    ("log", "off"),
    ("log", "x"),
    ("print", "hello"),
    ("print", ""),
    ("print",),
    ("logfile",),
    ("memreport",),
    ("memreport", "a", "b"),
    ("conflicts",),
    ("live-update", "/nonexistent/binary"),
    ("live-update", "-t", "5", "-c", "console=hvc0", "/nonexistent/binary", "-F"),
]


@pytest.mark.parametrize("args", SAME_AS_C, ids=" ".join)
def test_same_as_c(xs_socket: str, args: tuple[str, ...]) -> None:
    if c_control() is None:
        pytest.skip("Xen's xenstore-control is not installed (apt install xen-utils-4.17)")
    assert run("ours", xs_socket, *args) == run("c", xs_socket, *args)


# -- the conversation, against a scripted daemon -----------------------------------

#: An answer: a payload (sent as the reply to CONTROL or READ), a Reply, or None
#: to hang up; a list answers in turn and then repeats its last item.
Scripted = bytes | Reply | None


class Script:
    """Answers by (op, payload); anything unscripted gets ENOENT."""

    def __init__(self, rules: Mapping[tuple[Op, bytes], Scripted | list[Scripted]]) -> None:
        self.rules = {
            key: list(value) if isinstance(value, list) else [value] for key, value in rules.items()
        }

    def __call__(self, request: Request) -> Reply | None:
        answers = self.rules.get((request.op, request.payload))
        if answers is None:
            return error("ENOENT")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, bytes):
            return Reply(request.op, answer)
        return answer


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeXenstored]]:
    """Start scripted daemons (``serve({...})``); all are closed after the test."""
    started: list[FakeXenstored] = []

    def start(rules: Mapping[tuple[Op, bytes], Scripted | list[Scripted]]) -> FakeXenstored:
        fake = FakeXenstored(Script(rules))
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.close()


def lu(*args: bytes) -> tuple[Op, bytes]:
    """The key of a ``live-update`` CONTROL request with these arguments."""
    return CONTROL, b"".join(arg + b"\0" for arg in (b"live-update", *args))


def sent(fake: FakeXenstored) -> list[tuple[Op, bytes]]:
    return [(request.op, request.payload) for request in fake.requests]


DOMID = (READ, b"/tool/xenstored/domid\0")
HELP = (CONTROL, b"help\0")
ABORT = lu(b"-a")


@pytest.mark.parametrize(
    ("reply", "out"),
    [
        (b"OK\0", b"OK\n"),
        (b"two\nlines\n\0", b"two\nlines\n\n"),
        (b"no NUL", b"no NUL\n"),
        (b"cut\0here", b"cut\n"),
        (b"", b""),
        (b"\0", b""),
        (b"\0hidden", b""),
    ],
)
def test_reply_is_printed_up_to_its_first_nul(
    impl: str, serve: Callable[..., FakeXenstored], reply: bytes, out: bytes
) -> None:
    fake = serve({(CONTROL, b"cmd\0a\0\0b\0"): reply})
    assert run(impl, fake.path, "cmd", "a", "", "b") == (0, out, b"")
    assert sent(fake) == [(CONTROL, b"cmd\0a\0\0b\0")]


def test_arguments_are_bytes(impl: str, serve: Callable[..., FakeXenstored]) -> None:
    fake = serve({(CONTROL, b"cmd\xff\0\xfe x\0"): b"\x80\0"})
    assert run(impl, fake.path, b"cmd\xff", b"\xfe x") == (0, b"\x80\n", b"")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ENOENT", b"Error 2 when trying to execute command.\n"),
        ("ENOSYS", b"Error 38 when trying to execute command.\n"),
        ("EACCES", b"Error 13 when trying to execute command.\n"),
        ("E2BIG", b"Error 7 when trying to execute command.\n"),
    ],
)
def test_errors_other_than_einval(
    impl: str, serve: Callable[..., FakeXenstored], name: str, message: bytes
) -> None:
    fake = serve({(CONTROL, b"cmd\0"): error(name)})
    assert run(impl, fake.path, "cmd") == (3, b"", message)
    assert sent(fake) == [(CONTROL, b"cmd\0")]  # no help asked


def test_hang_up_is_ebadf(impl: str, serve: Callable[..., FakeXenstored]) -> None:
    fake = serve({(CONTROL, b"cmd\0"): None})
    assert run(impl, fake.path, "cmd") == (3, b"", b"Error 9 when trying to execute command.\n")


@pytest.mark.parametrize("name", ["EINVAL", "EWHATEVER"])  # an unknown name is EINVAL
def test_einval_asks_for_help(impl: str, serve: Callable[..., FakeXenstored], name: str) -> None:
    fake = serve({(CONTROL, b"cmd\0x\0"): error(name), HELP: b"a\tb\nc\0ignored"})
    assert run(impl, fake.path, "cmd", "x") == (3, b"", NOT_SUPPORTED + b"a\tb\nc\n")
    assert sent(fake) == [(CONTROL, b"cmd\0x\0"), HELP]


@pytest.mark.parametrize("answer", [error("EINVAL"), error("ENOSYS"), None])
def test_help_fails_too(
    impl: str, serve: Callable[..., FakeXenstored], answer: Reply | None
) -> None:
    fake = serve({(CONTROL, b"cmd\0"): error("EINVAL"), HELP: answer})
    assert run(impl, fake.path, "cmd") == (3, b"", b"Error when executing command.\n")


# A daemon without live-update: EINVAL (ours and cxenstored for any unknown
# command) or ENOSYS (no CONTROL at all) to the very first step, which needs
# no abort.
@pytest.mark.parametrize(
    ("name", "reason"), [("EINVAL", b"Invalid argument"), ("ENOSYS", b"Function not implemented")]
)
def test_live_update_unsupported(
    impl: str, serve: Callable[..., FakeXenstored], name: str, reason: bytes
) -> None:
    fake = serve({lu(b"-f", b"/new/xenstored"): error(name)})
    assert run(impl, fake.path, "live-update", "-c", "x", "/new/xenstored") == (
        3,
        b"",
        b"Setting update binary failed:\n" + reason + b"\n",
    )
    assert sent(fake) == [DOMID, lu(b"-f", b"/new/xenstored")]


def test_live_update_binary_refused(impl: str, serve: Callable[..., FakeXenstored]) -> None:
    fake = serve({lu(b"-f", b"/x"): b"File not accessible.\0"})
    assert run(impl, fake.path, "live-update", "/x") == (
        3,
        b"",
        b"Setting update binary failed:\nFile not accessible.\n",
    )
    assert sent(fake) == [DOMID, lu(b"-f", b"/x")]


def test_live_update_daemon(impl: str, serve: Callable[..., FakeXenstored]) -> None:
    start = lu(b"-s", b"-t", b"30", b"-F")
    fake = serve(
        {
            lu(b"-f", b"/b"): b"OK\0",
            lu(b"-c", b"console=hvc0 x"): b"OK\0",
            start: [b"BUSY\0", b"OK\0"],
        }
    )
    # The last non-option is the binary; options may come anywhere.
    args = ("/a", "-F", "-t", "30", "/b", "-c", "console=hvc0 x")
    assert run(impl, fake.path, "live-update", *args) == (0, b"", b"")
    assert sent(fake) == [DOMID, lu(b"-f", b"/b"), lu(b"-c", b"console=hvc0 x"), start, start]


@pytest.mark.parametrize(
    ("timeout", "sent_as"),
    [(None, b"60"), ("-1", b"4294967295"), ("7seconds", b"7"), (" +8", b"8")],
)
def test_live_update_timeout_argument(
    impl: str, serve: Callable[..., FakeXenstored], timeout: str | None, sent_as: bytes
) -> None:
    start = lu(b"-s", b"-t", sent_as)
    fake = serve({lu(b"-f", b"/b"): b"OK\0", start: b"OK\0"})
    args = ("/b",) if timeout is None else ("-t", timeout, "/b")
    assert run(impl, fake.path, "live-update", *args) == (0, b"", b"")
    assert sent(fake) == [DOMID, lu(b"-f", b"/b"), start]


def test_live_update_cmdline_refused(impl: str, serve: Callable[..., FakeXenstored]) -> None:
    fake = serve({lu(b"-f", b"/b"): b"OK\0", lu(b"-c", b"x"): error("ENOMEM")})
    assert run(impl, fake.path, "live-update", "-c", "x", "/b") == (
        3,
        b"",
        b"Setting update binary failed:\nCannot allocate memory\n",
    )
    assert sent(fake) == [DOMID, lu(b"-f", b"/b"), lu(b"-c", b"x"), ABORT]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"Timeout reached.\0", b"Timeout reached."),
        (error("EINVAL"), b"Invalid argument"),
        (None, b"Bad file descriptor"),
    ],
)
def test_live_update_start_refused(
    impl: str, serve: Callable[..., FakeXenstored], answer: Scripted, reason: bytes
) -> None:
    start = lu(b"-s", b"-t", b"60")
    fake = serve({lu(b"-f", b"/b"): b"OK\0", start: answer})
    assert run(impl, fake.path, "live-update", "/b") == (
        3,
        b"",
        b"Starting live update failed:\n" + reason + b"\n",
    )
    # After a hang-up the abort cannot be sent, and C does not reconnect.
    tail = [] if answer is None else [ABORT]
    assert sent(fake) == [DOMID, lu(b"-f", b"/b"), start, *tail]


def test_live_update_busy_until_timeout(impl: str, serve: Callable[..., FakeXenstored]) -> None:
    start = lu(b"-s", b"-t", b"1")
    fake = serve({lu(b"-f", b"/b"): b"OK\0", start: b"BUSY\0"})
    assert run(impl, fake.path, "live-update", "-t", "1", "/b") == (
        3,
        b"",
        b"Starting live update failed:\nBUSY\n",
    )
    # A try, a second's sleep, and then time(NULL) has moved on by 1: no more.
    assert sent(fake) == [DOMID, lu(b"-f", b"/b"), start, ABORT]


@pytest.mark.skipif(
    any(os.path.exists(path) for path in ("/dev/xen/privcmd", "/proc/xen/privcmd")),
    reason="on a Xen host Xen's tool loads the stubdom kernel",
)
@pytest.mark.parametrize("domid", [b"1", b""])  # any readable value means a stubdom
def test_live_update_stubdom_without_xen(
    impl: str, serve: Callable[..., FakeXenstored], domid: bytes
) -> None:
    fake = serve({DOMID: domid, ABORT: b"OK\0"})
    assert run(impl, fake.path, "live-update", "-c", "x", "/stubdom.gz") == (1, b"", NO_XEN)
    assert sent(fake) == [DOMID, ABORT]


# -- our own packaging ---------------------------------------------------------------


def test_module_entry_point(xs_socket: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xenstore.tools.control", "help"],
        env=helpers.tool_env(xs_socket),
        capture_output=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, daemon_help(xs_socket) + b"\n", b"")


def test_main_in_process(
    xs_socket: str, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    from xenstore.tools import control

    monkeypatch.setenv("XENSTORED_PATH", xs_socket)
    assert control.main(["help"], prog=PROG) == 0
    assert control.main([], prog=PROG) == 2
    assert control.main(["nonsense"], prog=PROG) == 3
    monkeypatch.setenv("XENSTORED_PATH", "/nonexistent")
    assert control.main(["help"], prog=PROG) == 1
    out, err = capfdbinary.readouterr()
    text = daemon_help(xs_socket)
    assert out == text + b"\n"
    assert err == USAGE + NOT_SUPPORTED + text + b"\n" + NO_DAEMON
