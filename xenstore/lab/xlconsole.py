"""``pyxl console``: a guest's console on this terminal, as xl's console (xenconsole) gives it.

After the host's answer, the connection carries the console's raw bytes both
ways. On a terminal, stdin is put in raw mode (as cfmakeraw) so every key
reaches the guest, and Ctrl-] alone detaches, as with xenconsole. Otherwise
(a pipe, a file, a test) stdin is copied to the console until its end, then
what the guest still says is drained for a moment before the command ends.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from typing import Any

from xenstore.lab.rpc import HostError
from xenstore.lab.xlsession import FAILURE, Invocation, err

#: Ctrl-], xenconsole's escape: detaches when it is all one read brought.
ESCAPE = b"\x1d"
#: After stdin ends: stop once the guest is quiet this long, or after DRAIN_MAX.
DRAIN_QUIET = 0.5
DRAIN_MAX = 5.0
CONSOLE_TYPES = ("pv", "serial", "vuart")


def cmd_console(inv: Invocation) -> int:
    kind = inv.value("-t")
    if kind is not None and kind not in CONSOLE_TYPES:
        err(f"console type supported are: {', '.join(CONSOLE_TYPES)}")
        return FAILURE
    return attach(inv, inv.find_domain(inv.args[0]))


def attach(inv: Invocation, domid: int) -> int:
    """Attach to ``domid``'s primary console on ``inv``'s host until detached or gone."""
    interactive = os.isatty(0)
    saved = _raw_terminal() if interactive else None
    try:
        client = inv.client()
        try:
            client.call("console", domain=str(domid))
        except HostError as exc:
            raise inv.fail(exc, "Unable to attach console") from None
        client.sock.settimeout(None)
        try:
            _write_out(client.leftover())
            return _interactive(client.sock) if interactive else _piped(client.sock)
        except (ConnectionError, TimeoutError):
            return 0  # the console's end closed: as xenconsole when the pty goes
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSANOW, saved)


def _raw_terminal() -> list[Any]:
    """Put the terminal in raw mode at once, keeping what was typed already (setraw's
    default, TCSAFLUSH, would throw away keys typed while the console attaches);
    returns the settings to restore."""
    import termios
    import tty

    saved: list[Any] = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSANOW)
    return saved


def _write_out(data: bytes) -> None:
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _interactive(sock: socket.socket) -> int:
    while True:
        ready, _, _ = select.select([0, sock.fileno()], [], [])
        if 0 in ready:
            data = os.read(0, 60)
            if data == ESCAPE or not data:
                return 0
            sock.sendall(data)
        if sock.fileno() in ready:
            data = sock.recv(4096)
            if not data:
                return 0  # the console went away (the guest is gone)
            _write_out(data)


def _piped(sock: socket.socket) -> int:
    stdin_open = True
    while stdin_open:
        ready, _, _ = select.select([0, sock.fileno()], [], [])
        if 0 in ready:
            data = os.read(0, 4096)
            if data:
                sock.sendall(data)
            else:
                stdin_open = False
        if sock.fileno() in ready:
            data = sock.recv(4096)
            if not data:
                return 0
            _write_out(data)
    _drain(sock)
    return 0


def _drain(sock: socket.socket) -> None:
    """What the guest answers to the last input, until it falls quiet (bounded)."""
    deadline = time.monotonic() + DRAIN_MAX
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], min(DRAIN_QUIET, left))
        if not ready:
            return
        data = sock.recv(4096)
        if not data:
            return
        _write_out(data)

