"""WATCH, UNWATCH, RESET_WATCHES, and the events a change fires.

A new watch's first event follows its reply at once, as cxenstored sends it.
An event reaches a connection that may read the node (or, for a removal, its
parent or the removed node's old perms); the special nodes ``@introduceDomain``
and ``@releaseDomain`` are judged by their own perms (SET_PERMS on them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenstore import paths
from xenstore.changes import Change
from xenstore.daemon.effects import Effect, Outbox
from xenstore.errors import EINVAL
from xenstore.protocol.codec import split

if TYPE_CHECKING:
    from xenstore.daemon.access import Access
    from xenstore.daemon.quotas import Quotas
    from xenstore.daemon.state import Connection, ServerState
    from xenstore.transactions import Transaction

OK = b"OK\0"


class WatchOps:
    """The watch requests of ``state``'s connections, and firing events."""

    def __init__(self, state: ServerState, access: Access, quotas: Quotas,
                 abort_all: Callable[[Connection], None]) -> None:
        self.state = state
        self.access = access
        self.quotas = quotas
        self.abort_all = abort_all

    def fire(self, change: Change | None, out: Outbox) -> None:
        """The events of ``change`` (None: nothing changed yet), to whoever may hear."""
        if change is not None:
            events = self.state.watches.events(change, self.access.may_hear)
            if events:
                out.extend(events)

    def fire_special(self, name: str, domid: int) -> list[Effect]:
        """Events of ``@introduceDomain`` or ``@releaseDomain`` for ``domid``."""
        return list(self.state.watches.special_events(
            name, domid, self.access.may_hear, self.state.special_perms[name]))

    def watch(self, conn: Connection, tx: Transaction | None, payload: bytes,
              out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) not in (2, 3):
            raise EINVAL("WATCH takes a path, a token and an optional depth")
        depth = None
        if len(fields) == 3:
            if not fields[2].isdigit() or len(fields[2]) > 9:
                raise EINVAL("the watch depth must be a small decimal number")
            depth = int(fields[2])
        raw = fields[0].decode("latin-1")
        wpath = paths.canonical_watch(raw, conn.domid,
                                      self.quotas.limit(conn.domid, "path-max"))
        self.quotas.check_watch(conn, wpath, fields[1], out)
        relative_to = None if raw[:1] in ("/", "@") else paths.home(conn.domid) + "/"
        watch = self.state.watches.add(conn.conn_id, wpath, fields[1], depth, relative_to)
        out.after_reply.append(watch.event(wpath))
        return OK

    def unwatch(self, conn: Connection, tx: Transaction | None, payload: bytes,
                out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) != 2:
            raise EINVAL("UNWATCH takes a path and a token")
        raw = fields[0].decode("latin-1")
        # Canonical form without validation: an invalid path is just not watched.
        wpath = raw if raw[:1] in ("/", "@") else f"{paths.home(conn.domid)}/{raw}"
        self.state.watches.remove(conn.conn_id, wpath, fields[1])
        return OK

    def reset_watches(self, conn: Connection, tx: Transaction | None, payload: bytes,
                      out: Outbox) -> bytes:
        self.state.watches.remove_all(conn.conn_id)
        self.abort_all(conn)
        return OK
