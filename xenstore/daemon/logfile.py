"""Where the daemon's log goes: stderr, a file (``--log-file``), syslog (``--syslog``).

Every line carries its time and level, ``2026-12-01 17:56:56.123 WARNING
pyxenstored: ...``, on stderr and in the file; syslog gets the level as the
message's priority and in its text, and stamps the time itself. (The start-up
lines saying where the daemon listens are printed for people, not logged.)

The file is reopened on SIGHUP, as cxenstored reopens its trace file, so that
logrotate can move it away and the daemon goes on in a fresh one.
"""

from __future__ import annotations

import logging
import logging.handlers
import socket

FORMAT = "%(asctime)s %(levelname)s pyxenstored: %(message)s"
SYSLOG_FORMAT = "pyxenstored[%(process)d]: %(levelname)s %(message)s"
#: Where syslog listens on Linux (``--syslog`` without an address).
SYSLOG_SOCKET = "/dev/log"


class Formatter(logging.Formatter):
    """:data:`FORMAT`, with milliseconds after a dot (ISO 8601's way, not logging's comma)."""

    default_msec_format = "%s.%03d"

    def __init__(self) -> None:
        super().__init__(FORMAT)


class ReopenableFileHandler(logging.FileHandler):
    """A log file that :meth:`reopen` closes and opens again at the same path."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def syslog_handler(address: str) -> logging.handlers.SysLogHandler:
    """A handler to syslog's datagram socket at ``address``, facility daemon.

    Raises OSError if nothing listens there: logging's handler would only say
    so later, in a traceback per line.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
    handler = logging.handlers.SysLogHandler(
        address, logging.handlers.SysLogHandler.LOG_DAEMON, socket.SOCK_DGRAM)
    handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    return handler


def configure(
    verbose: bool, log_file: str | None, syslog: str | None = None
) -> ReopenableFileHandler | None:
    """Log to stderr, and to ``log_file`` and the ``syslog`` socket if given.

    INFO and up with ``verbose`` (DEBUG too), else WARNING and up. Returns the
    file's handler, for SIGHUP. Raises OSError if the file cannot be opened or
    syslog cannot be reached.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    handlers[0].setFormatter(Formatter())
    file_handler = None
    if log_file is not None:
        file_handler = ReopenableFileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(Formatter())
        handlers.append(file_handler)
    if syslog is not None:
        handlers.append(syslog_handler(syslog))
    for handler in handlers:
        root.addHandler(handler)
    return file_handler
