"""What every tool shares: argv, options, messages, exit codes and transactions.

Xen builds all the clients from one source file (xenstore_client.c) into one
binary that picks its mode from its name or its first argument, so they share
one option table, one usage function and one main loop. This module is that
main loop; the per-mode work lives in one module per command, each exposing
``perform(job, tx)``.

Messages follow err(3): ``<short name>: <text>[: <strerror>]`` on stderr,
where the short name is the basename of argv[0]. Every byte of an argument is
echoed as given, so the whole module works on bytes.
"""

from __future__ import annotations

import errno
import os
import sys

from xenstore.tools.cnum import atoi
from xenstore.tools.connection import Failure, ToolConnection, open_connection
from xenstore.tools.options import LongOption, Parser
from xenstore.tools.streams import SIGINT, Stdout, die_of, write_stderr

# typing and collections.abc are for the type checker only: they would cost every
# tool a third of its start-up (tests/protocol/test_imports.py pins what a tool loads).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    #: A mode's work: return 0, or 1 after reporting a failure.
    Perform = Callable[["Job", int], int]

__all__ = ["Job", "Usage", "main", "run"]

#: The modes, in the order of xenstore_client.c's lookup (for the multiplexer).
MODES = ("read", "chmod", "exists", "list", "ls", "rm", "write", "watch")

# The usage line of each mode after "Usage: <argv[0]> [<mode> ]". Xen 4.17
# still lists the obsolete -s, and "exists" shares the line of "list".
USAGE = {
    "read": b"[-h] [-p] [-s] [-R] key [...]",
    "write": b"[-h] [-s] [-R] key value [...]",
    "rm": b"[-h] [-s] [-t] key [...]",
    "exists": b"[-h] [-p] [-s] key [...]",
    "list": b"[-h] [-p] [-s] key [...]",
    "ls": b"[-h] [-f] [-p] [-s] [path]",
    "chmod": b"[-h] [-u] [-r] [-s] key <mode [modes...]>",
    "watch": b"[-h] [-n NR] key",
}

# One table for every mode, as in C: a flag another mode owns is a usage error,
# not an unknown option. -s (once "socket only") is accepted and ignored.
SHORTOPTS = b"hfspturn:R"
LONGOPTS = (
    LongOption(b"help", False, ord("h")),
    LongOption(b"flat", False, ord("f")),
    LongOption(b"prefix", False, ord("p")),
    LongOption(b"tidy", False, ord("t")),
    LongOption(b"upto", False, ord("u")),
    LongOption(b"recurse", False, ord("r")),
    LongOption(b"number", True, ord("n")),
    LongOption(b"raw", False, ord("R")),
)
# Watch depths (-d/--depth) came after 4.17: only watch knows them, so that
# the other modes still call -d an invalid option, as 4.17 does.
WATCH_SHORTOPTS = SHORTOPTS + b"d:"
WATCH_LONGOPTS = (*LONGOPTS, LongOption(b"depth", True, ord("d")))
# Which modes accept each mode-specific flag.
FLAG_MODES = {
    ord("f"): ("ls",),
    ord("p"): ("read", "list", "ls"),
    ord("t"): ("rm",),
    ord("u"): ("chmod",),
    ord("r"): ("chmod",),
    ord("n"): ("watch",),
    ord("R"): ("read", "write"),
    ord("d"): ("watch",),
}

#: ``INT_MAX / 2``: the width ``ls -f`` asks for, i.e. no truncation.
UNLIMITED_WIDTH = (2**31 - 1) // 2


class Usage:
    """Where messages go and how they are prefixed, for one invocation."""

    def __init__(self, argv0: bytes) -> None:
        self.argv0 = argv0
        # program_invocation_short_name: what err(3) and warn(3) print.
        self.name = argv0.rpartition(b"/")[2]

    def write(self, text: bytes) -> None:
        write_stderr(text)

    def warnx(self, text: bytes) -> None:
        self.write(self.name + b": " + text + b"\n")

    def warn(self, text: bytes, code: int) -> None:
        self.write(self.name + b": " + text + b": " + os.strerror(code).encode() + b"\n")

    def errx(self, text: bytes) -> NoReturn:
        self.warnx(text)
        raise SystemExit(1)

    def err(self, text: bytes, code: int) -> NoReturn:
        self.warn(text, code)
        raise SystemExit(1)

    def usage(self, mode: str | None, incl_mode: bool) -> NoReturn:
        """Print the usage line of ``mode`` and exit 1 (even for ``-h``, as 4.17 does)."""
        if mode is None:
            self.errx(b"Usage: " + self.argv0 + b" <mode> [-h] [...]")
        word = mode.encode() + b" " if incl_mode else b""
        self.errx(b"Usage: " + self.argv0 + b" " + word + USAGE[mode])


class Job:
    """One run of a mode: the parsed command line and where output goes.

    (A plain class: importing dataclasses would double the tools' start-up.)
    """

    def __init__(self, mode: str, msg: Usage, stdout: Stdout) -> None:
        self.mode = mode
        self.msg = msg
        self.stdout = stdout
        self.operands: list[bytes] = []
        self.prefix = False
        self.tidy = False
        self.upto = False
        self.recurse = False
        self.raw = False
        self.nr_watches = -1
        #: The watch depth of ``watch -d``; negative: an ordinary watch.
        self.depth = -1
        # ls's geometry: the line width it truncates to, the column the -p
        # dot leader runs to, and -f (full paths, no indent).
        self.max_width = 80
        self.desired_width = 60
        self.show_whole_path = False
        #: Output the C tools hold back until the transaction has ended.
        self.out = bytearray()
        self.xs: ToolConnection | None = None

    @property
    def conn(self) -> ToolConnection:
        assert self.xs is not None, "run() connects before perform()"
        return self.xs



def _transaction_wanted(mode: str, count: int) -> bool:
    """Whether C wraps the mode in a transaction (given the number of operands)."""
    if mode == "read":
        return count > 1
    if mode == "write":
        return count > 2
    return mode not in ("ls", "watch")


def parse(mode: str, argv: Sequence[bytes], msg: Usage, incl_mode: bool, stdout: Stdout) -> Job:
    """Parse ``argv`` (``argv[0]`` names getopt's messages) for ``mode``; exit on misuse."""
    job = Job(mode, msg, stdout)
    if mode == "watch":
        parser = Parser(argv, WATCH_SHORTOPTS, WATCH_LONGOPTS, msg.write)
    else:
        parser = Parser(argv, SHORTOPTS, LONGOPTS, msg.write)
    for code, optarg in parser:
        if code == ord("h"):
            msg.usage(mode, incl_mode)
        allowed = FLAG_MODES.get(code)
        if allowed is None:
            continue  # -s, and whatever getopt rejected (already reported)
        if mode not in allowed:
            msg.usage(mode, incl_mode)
        if code == ord("f"):
            job.max_width, job.desired_width, job.show_whole_path = UNLIMITED_WIDTH, 0, True
        elif code == ord("p"):
            job.prefix = True
        elif code == ord("t"):
            job.tidy = True
        elif code == ord("u"):
            job.upto = True
        elif code == ord("r"):
            job.recurse = True
        elif code == ord("n"):
            job.nr_watches = atoi(optarg or b"")
        elif code == ord("d"):
            job.depth = atoi(optarg or b"")
        elif code == ord("R"):
            job.raw = True
    job.operands = parser.operands
    count = len(job.operands)
    if mode == "write" and count % 2 == 1:
        msg.usage(mode, incl_mode)
    if mode != "ls" and count == 0:
        msg.usage(mode, incl_mode)
    return job


def _terminal_columns() -> int | None:
    """``ws_col`` of stdout if it is a terminal (TIOCGWINSZ), else None."""
    try:
        return os.get_terminal_size(1).columns
    except (OSError, ValueError):
        return None


def run(job: Job, perform: Perform) -> int:
    """Connect, run ``perform`` (in a transaction where C uses one) and print."""
    if job.mode == "ls":
        columns = _terminal_columns()
        if columns is not None:
            # Overrides even -f's unlimited width, as in C.
            job.max_width = columns - 2
    try:
        job.xs = open_connection()
    except Failure as exc:
        job.msg.err(b"xs_open", exc.errno)
    try:
        ret = _perform_transaction(job, perform)
    finally:
        job.conn.close()
    # Held-back output appears only now, and only if the transaction ended.
    if job.out:
        job.stdout.write(job.out)
    return ret


def _perform_transaction(job: Job, perform: Perform) -> int:
    """Run ``perform`` once, or in a transaction retried while its commit gets EAGAIN."""
    if not _transaction_wanted(job.mode, len(job.operands)):
        return perform(job, 0)
    while True:
        tx = job.conn.xs_transaction_start()
        if tx == 0:
            job.msg.errx(b"couldn't start transaction")
        job.out.clear()
        ret = perform(job, tx)
        try:
            # A failed run is abandoned ("F"), a good one committed ("T").
            job.conn.xs_transaction_end(tx, abort=ret != 0)
        except Failure as exc:
            if ret == 0 and exc.errno == errno.EAGAIN:
                continue  # another client changed what we read: start again
            job.msg.errx(b"couldn't end transaction")
        return ret


def _program_name() -> str:
    """argv[0] as the shell most likely passed it.

    A console script loses its argv[0]: the kernel hands the interpreter the
    script's full path instead. When that path is what a $PATH lookup of its
    basename finds, the command was most likely typed by name, which is what
    the C tools would then print in their usage line.
    """
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "xenstore"
    if not os.path.isabs(argv0):
        return argv0
    base = os.path.basename(argv0)
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", base)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return base if os.path.abspath(candidate) == argv0 else argv0
    return argv0


def main(
    mode: str | None,
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    perform: Perform | None = None,
) -> int:
    """The C ``main()``: ``argv`` excludes the program name, ``prog`` is argv[0].

    With ``mode`` None this is the multiplexer: the mode comes from a
    ``xenstore-<mode>`` program name, else from the first argument. Returns
    the exit status; exits early (SystemExit) where C calls err() or errx().
    """
    args = [os.fsencode(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    argv0 = os.fsencode(prog if prog is not None else _program_name())
    msg = Usage(argv0)
    stdout = Stdout()
    try:
        try:
            return _main(mode, args, msg, stdout, perform)
        finally:
            stdout.flush()  # as exit() flushes stdio, even after err()
    except KeyboardInterrupt:
        die_of(SIGINT)  # e.g. stopping "xenstore watch"


def _main(
    mode: str | None, args: list[bytes], msg: Usage, stdout: Stdout, perform: Perform | None
) -> int:
    incl_mode = False
    getopt_argv = [msg.argv0, *args]
    if mode is None:
        command = msg.name
        if command.startswith(b"xenstore-"):
            mode = _lookup_mode(command[len(b"xenstore-") :], msg)
        elif not args:
            msg.usage(None, False)
        else:
            # "xenstore read ...": getopt sees "read" as its argv[0].
            mode = _lookup_mode(args[0], msg)
            getopt_argv = args
            incl_mode = True
    job = parse(mode, getopt_argv, msg, incl_mode, stdout)
    return run(job, perform if perform is not None else load_perform(mode))


def _lookup_mode(word: bytes, msg: Usage) -> str:
    for mode in MODES:
        if word == mode.encode():
            return mode
    # The C format ends in "\n" and errx adds another: a blank line follows.
    msg.errx(b"unknown mode " + word + b"\n")


def load_perform(mode: str) -> Perform:
    """The ``perform`` of a mode's module, imported only when that mode runs."""
    import importlib

    module_name, attr = _PERFORMERS[mode]
    perform: Perform = getattr(importlib.import_module(module_name), attr)
    return perform


_PERFORMERS = {
    "read": ("xenstore.tools.read", "perform"),
    "write": ("xenstore.tools.write", "perform"),
    "rm": ("xenstore.tools.rm", "perform"),
    "exists": ("xenstore.tools.exists", "perform"),
    "list": ("xenstore.tools.list", "perform"),
    "ls": ("xenstore.tools.ls", "perform"),
    "chmod": ("xenstore.tools.chmod", "perform"),
    "watch": ("xenstore.tools.watch", "perform"),
}
