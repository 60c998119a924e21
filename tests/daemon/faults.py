"""Run the real daemon with one injected bug: ``XS_FAULT=NAME python -m tests.daemon.faults ARGS``.

Each fault makes one part of the daemon raise once, the first time it runs
(``RuntimeError("injected fault: NAME")``); everything else is the daemon as
shipped, so a test can check over real sockets that the failure costs that part
alone. The faults are planted where they work whether the daemon runs as pure
Python or compiled (``scripts/compile``): never in a method of a compiled module,
which compiled code calls directly, but in what such code looks up at run time (an
accept loop, a socket, trio, an uncompiled module). By the part they hit:

- ``dom0-accept``: dom0's accept loop (handing over a connection it accepted);
- ``guest-accept``: a guest socket's accept loop, likewise;
- ``reader``: a connection's own reader (reading its socket);
- ``writer``: a connection's writer task (draining its backlog);
- ``write-rate``: a guest's write-rate bucket;
- ``log-rate``: a guest's log-line budget;
- ``signals``: the SIGHUP handling (reopening the trace and log files).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import trio

from xenstore.daemon import __main__ as daemon_main
from xenstore.daemon import listeners
from xenstore.daemon import shell as shell_module
from xenstore.daemon.ratelimit import TokenBucket

FAULTS = ("dom0-accept", "guest-accept", "reader", "writer", "write-rate", "log-rate",
          "signals")

#: The faults that have fired: each fires once in the daemon's life.
_fired: set[str] = set()

Accepted = Callable[[socket.socket], None]
AcceptLoop = Callable[[socket.socket, Accepted], Coroutine[Any, Any, None]]


def fire(name: str) -> None:
    """Raise fault ``name``, unless it has fired already."""
    if name not in _fired:
        _fired.add(name)
        raise RuntimeError(f"injected fault: {name}")


def once(name: str, original: Callable[..., Any],
         when: Callable[..., bool] = lambda *a, **k: True) -> Callable[..., Any]:
    """``original``, except that the first call for which ``when`` holds raises."""

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if name not in _fired and when(*args, **kwargs):
            fire(name)
        return original(*args, **kwargs)

    return faulty


def accepting(loop: AcceptLoop,
              hand: Callable[[Accepted], Accepted]) -> Callable[..., Coroutine[Any, Any, None]]:
    """The accept loop ``loop``, handing each connection to ``hand(accepted)`` instead."""

    async def accept_loop(listener: socket.socket, accepted: Accepted) -> None:
        await loop(listener, hand(accepted))

    return accept_loop


class _FaultySocket(socket.socket):
    """A connection whose first read raises."""

    def recv(self, *args: Any) -> bytes:
        fire("reader")
        return super().recv(*args)


def faulty_socket(sock: socket.socket) -> socket.socket:
    faulty = _FaultySocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    faulty.setblocking(False)
    return faulty


def install(name: str) -> None:
    # The shell's own accept loop is dom0's (its module's name for it; mypy does not
    # know that name as the shell's, hence the ignores).
    if name == "dom0-accept":
        shell_module.accept_loop = accepting(  # type: ignore[attr-defined]
            shell_module.accept_loop, lambda accepted: once(name, accepted))  # type: ignore[attr-defined]
    elif name == "guest-accept":  # the domain sockets' accept loops are listeners'
        listeners.accept_loop = accepting(
            listeners.accept_loop, lambda accepted: once(name, accepted))
    elif name == "reader":
        shell_module.accept_loop = accepting(  # type: ignore[attr-defined]
            shell_module.accept_loop,  # type: ignore[attr-defined]
            lambda accepted: lambda sock: accepted(faulty_socket(sock)))
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
