"""Where the daemon's socket lives, decided as libxenstore decides it."""

from __future__ import annotations

import os

DEFAULT_RUNDIR = "/var/run/xenstored"
#: sun_path holds 108 bytes including the terminating NUL.
SUN_PATH_MAX = 107


def default_socket_path() -> str:
    """``$XENSTORED_PATH``, else ``$XENSTORED_RUNDIR/socket``, else /var/run/xenstored/socket."""
    path = os.environ.get("XENSTORED_PATH")
    if path:
        return path
    rundir = os.environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR
    return os.path.join(rundir, "socket")


def connect_hint(path: str | None) -> str:
    """What a connection error adds after the path it tried: whence it came, what to set.

    ``path`` is what the caller gave (None: the default was used).
    """
    if path is not None:
        return " (is the daemon running, and is that its socket?)"
    if os.environ.get("XENSTORED_PATH"):
        return (" (from $XENSTORED_PATH: is the daemon running? Set XENSTORED_PATH to the "
                "socket it listens on)")
    whence = "$XENSTORED_RUNDIR/socket" if os.environ.get("XENSTORED_RUNDIR") else "the default"
    return f" ({whence}: set XENSTORED_PATH to the socket the daemon listens on)"
