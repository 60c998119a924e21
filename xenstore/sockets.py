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
