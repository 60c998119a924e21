"""Run the real daemon with one injected bug: ``XS_FAULT=NAME python -m tests.daemon.faults ARGS``.

Each fault makes one part of the daemon raise once, the first time it runs
(``RuntimeError("injected fault: NAME")``); everything else is the daemon as
shipped, so a test can check over real sockets that the failure costs that part
alone. The faults, by the part they hit:

- ``dom0-accept``: dom0's accept loop (handing over a connection it accepted);
- ``guest-accept``: a guest socket's accept loop, likewise;
- ``reader``: a connection's own reader (carrying out a request's effects);
- ``writer``: a connection's writer task (draining its backlog);
- ``write-rate``: a guest's write-rate bucket;
- ``log-rate``: a guest's log-line budget;
- ``signals``: the SIGHUP handling (reopening the trace and log files).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import trio

from xenstore.daemon import __main__ as daemon_main
from xenstore.daemon.ratelimit import TokenBucket
from xenstore.daemon.shell import Shell

FAULTS = ("dom0-accept", "guest-accept", "reader", "writer", "write-rate", "log-rate",
          "signals")


def once(name: str, original: Callable[..., Any],
         when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
    """``original``, except that the first call for which ``when`` holds raises."""
    fired = [False]

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if not fired[0] and when(*args, **kwargs):
            fired[0] = True
            raise RuntimeError(f"injected fault: {name}")
        return original(*args, **kwargs)

    return faulty


def install(name: str) -> None:
    if name == "dom0-accept":
        Shell.start_peer = once(  # type: ignore[method-assign]
            name, Shell.start_peer, lambda self, sock, domid: domid is None)
    elif name == "guest-accept":
        Shell.start_peer = once(  # type: ignore[method-assign]
            name, Shell.start_peer, lambda self, sock, domid: domid is not None)
    elif name == "reader":
        Shell._take = once(name, Shell._take)  # type: ignore[method-assign]
    elif name == "writer":
        # Only the writer task waits for a socket to become writable.
        trio.lowlevel.wait_writable = once(name, trio.lowlevel.wait_writable)
    elif name == "write-rate":
        TokenBucket.take = once(name, TokenBucket.take)  # type: ignore[method-assign]
    elif name == "log-rate":
        TokenBucket.try_take = once(name, TokenBucket.try_take)  # type: ignore[method-assign]
    elif name == "signals":
        daemon_main.reopen_files = once(name, daemon_main.reopen_files)
    else:
        raise SystemExit(f"no fault named {name!r}; known: {', '.join(FAULTS)}")


def main(argv: list[str]) -> int:
    install(os.environ["XS_FAULT"])
    return daemon_main.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
