"""CONTROL ``live-update``: the steps ``xenstore-control`` sends a daemon, as cxenstored 4.17
answers them (replies are its exact strings; a malformed step is EINVAL).

- ``-f <file>``: begin a session for this connection with the new binary
  (``File not accessible.``, ``File not executable.``, ``live-update session
  already active.``);
- ``-c <cmdline>``: the new binary's arguments, split at blanks (``Not in
  live-update session.`` from any other connection);
- ``-s [-F] [-t <timeout>]``: start. With no transaction open the state goes to
  ``$XENSTORED_RUNDIR/state_dump`` and the binary is exec'd with ``-U`` (the
  shell does that: :class:`~xenstore.daemon.effects.ExecLiveUpdate`). While
  transactions are open we answer ``BUSY`` (``xenstore-control`` asks again each
  second; cxenstored 4.17 holds the request instead) until ``<timeout>`` seconds
  (default 0) have passed since the first ``-s`` (``-F``: one second less, see
  :data:`FORCE_SLACK`); then ``-F`` goes ahead anyway
  (cxenstored drops the transactions; we write them in our own records, so that
  an update into our daemon keeps them and one into cxenstored drops them) and
  without it the session ends with the reason (``Domains with long running
  transactions:`` and one ``Domain <id>: <seconds> s`` line each, counted from
  the first ``-s``: we do not keep when a transaction began);
- ``-a``: end the session (``No live-update session active.``).

The session also ends when its connection goes. ``-b``/``-d`` (a stubdom's
kernel) are EINVAL, as in cxenstored built as a daemon.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xenstore.daemon.effects import ExecLiveUpdate, Log, Outbox
from xenstore.daemon.replies import OK
from xenstore.daemon.state import Connection, ServerState
from xenstore.errors import EINVAL

__all__ = ["LiveUpdateOps", "check_binary", "exec_argv"]

NOT_IN_SESSION = "Not in live-update session."
#: xenstore-control counts ``-t`` in whole seconds of time() from just before its
#: first ``-s`` and stops asking once the count reaches it: up to a second before as
#: many seconds have passed since our first ``-s``. A forced update therefore goes
#: ahead a second early, so that the tool's last ``-s`` gets the OK (cxenstored 4.17
#: holds the ``-s`` until then instead of answering BUSY).
FORCE_SLACK = 1.0


def check_binary(filename: str) -> str | None:
    """Why ``filename`` cannot be the new binary (cxenstored's words), or None."""
    try:
        mode = os.stat(filename).st_mode
    except (OSError, ValueError):
        return "File not accessible."
    if not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        return "File not executable."
    return None


def exec_argv(filename: str, cmdline: str | None, own_args: Sequence[str]) -> list[str]:
    """The new binary's argv: ``-c``'s words, else our own arguments, then ``-U`` if absent.

    As cxenstored does; our daemon accepts cxenstored's flags, so its own
    arguments suit both daemons when they are the flags they share.
    """
    args = cmdline.split() if cmdline is not None else list(own_args)
    if "-U" not in args:
        args.append("-U")
    return [filename, *args]


@dataclass
class _Session:
    conn_id: int
    filename: str
    cmdline: str | None = None
    #: When the first ``-s`` came (the clock's reading), None before.
    started: float | None = None


def _reply(text: str) -> bytes:
    return text.encode() + b"\0"


class LiveUpdateOps:
    """The one live-update session a daemon may have, and its steps."""

    def __init__(self, state: ServerState, clock: Callable[[], float] = time.monotonic,
                 probe: Callable[[str], str | None] = check_binary) -> None:
        self.state = state
        self.clock = clock
        self.probe = probe
        self.session: _Session | None = None

    def forget(self, conn_id: int) -> None:
        """Connection ``conn_id`` went: its session, if any, ends."""
        if self.session is not None and self.session.conn_id == conn_id:
            self.session = None

    def command(self, conn: Connection, args: list[bytes], out: Outbox) -> bytes:
        if not args:
            raise EINVAL("live-update needs -f, -c, -s or -a")
        step, rest = args[0], args[1:]
        if step == b"-a":
            if rest:
                raise EINVAL("live-update -a takes no argument")
            if self.session is None:
                return _reply("No live-update session active.")
            self.session = None
            out.add(Log("live update: aborted", level=20))
            return OK
        if step == b"-f":
            if len(rest) != 1:
                raise EINVAL("live-update -f <file>")
            filename = rest[0].decode("utf-8", "surrogateescape")
            problem = self.probe(filename)
            if problem is not None:
                return _reply(problem)
            if self.session is not None:
                return _reply("live-update session already active.")
            self.session = _Session(conn.conn_id, filename)
            return OK
        if step == b"-c":
            if len(rest) != 1:
                raise EINVAL("live-update -c <cmdline>")
            if self.session is None or self.session.conn_id != conn.conn_id:
                return _reply(NOT_IN_SESSION)
            self.session.cmdline = rest[0].decode("utf-8", "surrogateescape")
            return OK
        if step == b"-s":
            return self._start(conn, rest, out)
        raise EINVAL(f"live-update: unknown step {step!r} (a daemon takes -f, -c, -s, -a)")

    def _start(self, conn: Connection, rest: list[bytes], out: Outbox) -> bytes:
        force, timeout = False, 0
        words = iter(rest)
        for word in words:
            if word == b"-F":
                force = True
            elif word == b"-t":
                value = next(words, None)
                if value is None or not value.isdigit():
                    raise EINVAL("live-update -s: -t needs a number of seconds")
                timeout = int(value)
            else:
                raise EINVAL(f"live-update -s: unknown option {word!r} (-F, -t <timeout>)")
        session = self.session
        if session is None or session.conn_id != conn.conn_id:
            return _reply(NOT_IN_SESSION)
        now = self.clock()
        if session.started is None:
            session.started = now
        busy = sorted({c.domid for c in self.state.connections.values() if c.transactions})
        if busy and now < session.started + timeout - (FORCE_SLACK if force else 0.0):
            return b"BUSY\0"
        if busy and not force:
            self.session = None
            waited = int(now - session.started)
            return _reply("Domains with long running transactions:" + "".join(
                f"\nDomain {domid}: {waited} s" for domid in busy))
        self.session = None
        out.add(ExecLiveUpdate(conn.conn_id, session.filename, session.cmdline, bool(busy)))
        return OK
