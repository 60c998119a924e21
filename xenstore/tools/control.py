"""``xenstore-control <command> [<arg>...]``: send a CONTROL request, print the reply.

The request is ``<command>\\0<arg>\\0...``; a reply is printed up to its first
NUL, followed by a newline, unless it is empty. Xen builds this tool from its
own source file, not from the clients' shared one, so there is no getopt here,
no ``<name>: `` prefix on messages, and exit codes of its own:

- 2: misuse: no command at all (the usage text, before any connection), or
  ``live-update`` without a binary or without the value of ``-c`` or ``-t``;
- 1: nothing to talk to: ``Failed to contact Xenstored.`` (``xs_open`` failed),
  or the local half of a stubdom live update (libxenctrl) failed;
- 3: the daemon refused or failed the command. EINVAL (what a daemon answers
  to a command it does not know) is followed by a ``help`` request and its
  answer: ``Command not supported. Valid commands are:``; any other errno is
  printed as a number (``Error 2 when trying to execute command.``).

``live-update [-c <cmdline>] [-F] [-t <timeout>] <file>`` is a conversation
rather than one request, each step a ``live-update`` CONTROL command answered
``OK`` (anything else is printed and ends it with exit code 3):

- when ``/tool/xenstored/domid`` cannot be read, xenstored is a daemon:
  ``-f <file>``, then ``-c <cmdline>`` if given, then ``-s -t <timeout> [-F]``,
  repeated once a second while the daemon answers ``BUSY``, for at most
  ``<timeout>`` seconds (default 60);
- else it is a stubdom, whose new kernel C loads with libxenctrl before
  sending it in ``-b <size>`` and ``-d`` chunks. Without a hypervisor that
  fails as libxenctrl does (exit code 1); with one, this tool, which does not
  use libxenctrl, says it cannot and exits 1 as well;
- a failure after the first step is followed by ``-a`` (abort), unanswered.

Where C's behaviour is undefined we pick: with a timeout of 0 (``-t 0``, or a
value ``atoi`` reads as 0) C compares a freed string and typically aborts; we
send the start request once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time

from xenstore.protocol.ops import Op
from xenstore.tools import common
from xenstore.tools.cnum import atoi
from xenstore.tools.connection import Failure, ToolConnection, open_connection
from xenstore.tools.streams import SIGINT, Stdout, die_of, write_stderr

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc would cost the tool's start-up
    from collections.abc import Sequence

__all__ = ["control_command", "live_update", "main"]

#: The exit codes of xenstore_control.c.
EXIT_LOCAL, EXIT_USAGE, EXIT_COMMAND = 1, 2, 3

LIVE_UPDATE = b"live-update"
#: Where a stubdom xenstored says which domain it runs in.
STUBDOM_DOMID = b"/tool/xenstored/domid"
#: The default of ``-t``: how long the daemon may answer BUSY, in seconds.
DEFAULT_TIMEOUT = 60
#: Where libxencall looks for the hypervisor, and the errnos that make it try
#: the second path after the first.
PRIVCMD = (b"/dev/xen/privcmd", b"/proc/xen/privcmd")
_PRIVCMD_FALLBACK = frozenset((errno.ENOENT, errno.ENXIO, errno.ENODEV))


def _c_string(data: bytes) -> bytes:
    """What C sees of a reply: the bytes before the first NUL."""
    return data.split(b"\0", 1)[0]


def control_command(conn: ToolConnection, cmd: bytes, data: bytes = b"") -> bytes:
    """``xs_control_command``: CONTROL ``cmd\\0`` + ``data``; the reply as a C string.

    ``data`` is sent as given: each argument with its own terminating NUL.
    Raises :class:`Failure` with libxenstore's errno (E2BIG for a request over
    the payload limit, which is never sent).
    """
    # ToolConnection's own errno mapping; it has no xs_control_command of its own.
    return _c_string(conn._call(Op.CONTROL, cmd + b"\0" + data, 0))


def _fields(*args: bytes) -> bytes:
    return b"".join(arg + b"\0" for arg in args)


# -- one command -----------------------------------------------------------------


def run_command(conn: ToolConnection, cmd: bytes, args: Sequence[bytes], stdout: Stdout) -> int:
    """Send ``cmd`` with ``args``; print the reply, or why it failed."""
    try:
        reply = control_command(conn, cmd, _fields(*args))
    except Failure as exc:
        if exc.errno != errno.EINVAL:
            write_stderr(b"Error %d when trying to execute command.\n" % exc.errno)
            return EXIT_COMMAND
        try:
            valid = control_command(conn, b"help")
        except Failure:
            write_stderr(b"Error when executing command.\n")
        else:
            write_stderr(b"Command not supported. Valid commands are:\n" + valid + b"\n")
        return EXIT_COMMAND
    if reply:
        stdout.write(reply + b"\n")
    return 0


# -- live-update -----------------------------------------------------------------


class _Step(Exception):
    """A live-update step failed; the message is already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _step(conn: ToolConnection, args: Sequence[bytes], failure: bytes) -> bytes:
    """One ``live-update`` request that must be answered; return the reply.

    A failed request prints ``failure``, then the errno's text, and raises.
    """
    try:
        return control_command(conn, LIVE_UPDATE, _fields(*args))
    except Failure as exc:
        write_stderr(failure + b":\n" + os.strerror(exc.errno).encode() + b"\n")
        raise _Step(EXIT_COMMAND) from None


def _expect_ok(conn: ToolConnection, args: Sequence[bytes], failure: bytes) -> None:
    """One ``live-update`` request that must be answered ``OK``."""
    reply = _step(conn, args, failure)
    if reply != b"OK":
        write_stderr(failure + b":\n" + reply + b"\n")
        raise _Step(EXIT_COMMAND)


def _abort(conn: ToolConnection) -> None:
    """``live-update -a``: drop whatever the daemon has been told; its answer is ignored."""
    with contextlib.suppress(Failure):
        control_command(conn, LIVE_UPDATE, _fields(b"-a"))


def _start(conn: ToolConnection, force: bool, timeout: int) -> None:
    """``-s -t <timeout> [-F]``, again each second while the daemon is BUSY."""
    args = [b"-s", b"-t", b"%d" % timeout, *([b"-F"] if force else [])]
    failure = b"Starting live update failed"
    began = int(time.time())  # C counts whole seconds of time(NULL)
    while True:
        reply = _step(conn, args, failure)
        if reply != b"BUSY":
            break
        time.sleep(1)
        if int(time.time()) - began >= timeout:
            break
    if reply != b"OK":
        write_stderr(failure + b":\n" + reply + b"\n")
        raise _Step(EXIT_COMMAND)


def _privcmd_errno() -> int:
    """Why libxencall cannot reach the hypervisor (0: it can)."""
    for path in PRIVCMD:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in _PRIVCMD_FALLBACK or path == PRIVCMD[-1]:
                return exc.errno or errno.EIO
            continue
        os.close(fd)
        return 0
    return errno.ENOENT  # not reached: the loop returns on its last path


def _load_kernel() -> None:
    """The stubdom's first step, where C loads the new kernel with libxenctrl: fail."""
    code = _privcmd_errno()
    if code:
        write_stderr(
            b"xencall: error: Could not obtain handle on privileged command interface: "
            + os.strerror(code).encode()
            + b"\nxc_interface_open() failed\n"
        )
    else:
        write_stderr(
            b"live update of a Xenstore stubdom needs Xen's libxenctrl: "
            b"use Xen's xenstore-control\n"
        )
    raise _Step(EXIT_LOCAL)


def _update(
    conn: ToolConnection, binary: bytes, cmdline: bytes | None, force: bool, timeout: int
) -> int:
    """Run the conversation; abort it if a step after the first fails."""
    try:
        conn.xs_read(STUBDOM_DOMID)
        stubdom = True
    except Failure:
        stubdom = False
    try:
        if stubdom:
            _load_kernel()
        else:
            # A daemon that will not take the binary has nothing to abort.
            _expect_ok(conn, [b"-f", binary], b"Setting update binary failed")
    except _Step as exc:
        if stubdom:
            _abort(conn)
        return exc.code
    try:
        if cmdline is not None:
            _expect_ok(conn, [b"-c", cmdline], b"Setting update binary failed")
        _start(conn, force, timeout)
    except _Step as exc:
        _abort(conn)
        return exc.code
    return 0


def live_update(conn: ToolConnection, args: Sequence[bytes]) -> int:
    """``live-update [-c <cmdline>] [-F] [-t <timeout>] <file>``; return the exit code.

    Options and the file may come in any order; the last file wins. No option
    is recognised by a prefix or glued to its value (``-t5`` is a file name).
    """
    binary: bytes | None = None
    cmdline: bytes | None = None
    force = False
    timeout = DEFAULT_TIMEOUT
    words = iter(args)
    for word in words:
        if word in (b"-c", b"-t"):
            value = next(words, None)
            if value is None:
                what = b"command line" if word == b"-c" else b"timeout"
                write_stderr(b"Missing " + what + b" value\n")
                return EXIT_USAGE
            if word == b"-c":
                cmdline = value
            else:
                timeout = atoi(value) & 0xFFFFFFFF  # an unsigned int in C
        elif word == b"-F":
            force = True
        else:
            binary = word
    if binary is None:
        write_stderr(b"Missing binary specification\n")
        return EXIT_USAGE
    return _update(conn, binary, cmdline, force, timeout)


# -- main ----------------------------------------------------------------------


def _run(argv0: bytes, args: list[bytes], stdout: Stdout) -> int:
    if not args:
        write_stderr(b"Usage:\n" + argv0 + b" <command> [<arg>...]\n")
        return EXIT_USAGE
    try:
        conn = open_connection()
    except Failure:
        write_stderr(b"Failed to contact Xenstored.\n")
        return EXIT_LOCAL
    try:
        if args[0] == LIVE_UPDATE:
            return live_update(conn, args[1:])
        return run_command(conn, args[0], args[1:], stdout)
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run as ``xenstore-control``; ``argv`` excludes the program name, ``prog`` is argv[0].

    Returns the exit status.
    """
    args = [os.fsencode(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    # The usage text names argv[0] in full, as given (not err(3)'s short name).
    argv0 = os.fsencode(prog if prog is not None else common._program_name())
    stdout = Stdout()
    try:
        try:
            return _run(argv0, args, stdout)
        finally:
            stdout.flush()  # as exit() flushes stdio
    except KeyboardInterrupt:
        die_of(SIGINT)  # e.g. while live-update waits out a BUSY daemon


if __name__ == "__main__":
    raise SystemExit(main())
