"""stdout and stderr with C stdio's failure behaviour, on the raw descriptors.

A C tool ignores write errors (``xenstore-ls >/dev/full`` still exits 0),
dies of SIGPIPE when its reader goes away, and runs fine with stdout or stderr
closed. Python's ``sys.stdout`` does none of that (it raises, prints a
traceback at exit, or is None), so the tools write to fds 1 and 2 themselves.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing would cost the tools' start-up
    from typing import NoReturn

__all__ = ["Stdout", "die_of", "write_stderr"]

SIGINT = 2
SIGPIPE = 13


def die_of(signum: int) -> NoReturn:
    """End the process by ``signum`` with its default action, as C would die."""
    import signal

    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # not reached: the signal is fatal


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except BrokenPipeError:
            die_of(SIGPIPE)
        except OSError:
            return  # stdio's error flag: the bytes are lost, the exit status is not


def write_stderr(data: bytes) -> None:
    """Write a message at once (stderr is unbuffered in C)."""
    _write_all(2, data)


class Stdout:
    """Buffered fd 1: like stdio, line-buffered on a terminal, block-buffered otherwise."""

    #: Flush when this much is pending (glibc uses the pipe's st_blksize).
    BLOCK = 4096

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self._buf = bytearray()
        try:
            self.interactive = os.isatty(fd)
        except OSError:
            self.interactive = False

    def write(self, data: bytes | bytearray) -> None:
        self._buf += data
        if len(self._buf) >= self.BLOCK or (self.interactive and b"\n" in data):
            self.flush()

    def flush(self) -> None:
        if self._buf:
            pending, self._buf = self._buf, bytearray()
            _write_all(self.fd, pending)
