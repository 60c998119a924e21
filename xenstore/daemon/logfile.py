"""Where the daemon's log goes: stderr, and a file given with ``--log-file``.

The file is reopened on SIGHUP, as cxenstored reopens its trace file, so that
logrotate can move it away and the daemon goes on in a fresh one.
"""

from __future__ import annotations

import logging

STDERR_FORMAT = "pyxenstored: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s pyxenstored: %(message)s"


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


def configure(verbose: bool, log_file: str | None) -> ReopenableFileHandler | None:
    """Log to stderr (and to ``log_file``); INFO and up with ``verbose``, else WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format=STDERR_FORMAT)
    if log_file is None:
        return None
    handler = ReopenableFileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler
