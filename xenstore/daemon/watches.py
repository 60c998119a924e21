"""The watch registry and the matching of changes against it.

A change at path P concerns the watches on P and on each of its ancestors: a
dict lookup per level, never a scan of every watch. The removal of a subtree
also concerns the watches *inside* it; a sorted index of watched paths finds
them with one range query, so a removal costs nothing extra when nobody
watches below it.

Within one change, events go out connection by connection (in the order the
connections arrived) and, per connection, in the order its watches were
registered, as cxenstored orders them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from sortedcontainers import SortedList

from xenstore import paths
from xenstore.changes import Change
from xenstore.daemon.effects import Send
from xenstore.errors import EEXIST, ENOENT
from xenstore.perms import Perms
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

_new = tuple.__new__

WATCH_EVENT = Op.WATCH_EVENT

#: Whether connection ``conn_id`` may hear of a change judged by these perms.
MayHear = Callable[[int, tuple[Perms, ...]], bool]


@dataclass(slots=True, eq=False)
class Watch:
    """One registered watch of one connection."""

    conn_id: int
    #: Canonical: an absolute path, or a special ``@`` name.
    wpath: str
    token: bytes
    #: Levels below ``wpath`` that match (None: any depth).
    depth: int | None
    #: ``/local/domain/<domid>/`` when the watch was given as a relative path,
    #: so events are reported relative too.
    relative_to: str | None
    #: Registration order, which orders a connection's events for one change.
    seq: int
    #: The end of every event's payload: ``\0<token>\0``.
    suffix: bytes = b""

    def epath(self, path: str) -> str:
        """The event path to report for ``path``."""
        if self.relative_to is not None and path.startswith(self.relative_to):
            return path[len(self.relative_to) :]
        return path

    def event(self, path: str) -> Send:
        """The WATCH_EVENT for a change at ``path`` (req_id and tx_id 0)."""
        payload = self.epath(path).encode() + self.suffix
        return Send(self.conn_id, Packet(WATCH_EVENT, 0, 0, payload))


def levels_below(path: str, top: str) -> int:
    """How many levels ``path`` lies below ``top`` (which is ``path`` or an ancestor)."""
    if path == top:
        return 0
    rest = path[1:] if top == paths.ROOT else path[len(top) + 1 :]
    return rest.count("/") + 1


class WatchRegistry:
    """Every connection's watches, indexed by watched path."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[Watch]] = {}
        self.by_conn: dict[int, dict[tuple[str, bytes], Watch]] = {}
        #: Watched absolute paths, sorted, for subtree range queries.
        self._index: SortedList = SortedList()
        self._seq = 0
        #: Watches looked at by matching (a test counts these, not seconds).
        self.examined = 0
        #: Connections whose events are filtered by permissions (the others hear all).
        self.unprivileged: set[int] = set()

    def __len__(self) -> int:
        return sum(len(w) for w in self.by_conn.values())

    def add(
        self, conn_id: int, wpath: str, token: bytes, depth: int | None, relative_to: str | None
    ) -> Watch:
        """Register a watch; EEXIST when the connection has the same (wpath, token)."""
        mine = self.by_conn.setdefault(conn_id, {})
        key = (wpath, token)
        if key in mine:
            raise EEXIST(f"already watching {wpath}")
        self._seq += 1
        watch = Watch(conn_id, wpath, token, depth, relative_to, self._seq,
                      b"\0" + token + b"\0")
        mine[key] = watch
        on_path = self.by_path.get(wpath)
        if on_path is None:
            self.by_path[wpath] = [watch]
            if wpath.startswith("/"):
                self._index.add(wpath)
        else:
            # Kept in event order, so that one path's watches need no sorting.
            bisect.insort(on_path, watch, key=_order)
        return watch

    def remove(self, conn_id: int, wpath: str, token: bytes) -> None:
        """Unregister a watch; ENOENT when there is no such watch."""
        watch = self.by_conn.get(conn_id, {}).pop((wpath, token), None)
        if watch is None:
            raise ENOENT(f"no watch on {wpath}")
        self._unindex(watch)

    def remove_all(self, conn_id: int) -> None:
        for watch in self.by_conn.pop(conn_id, {}).values():
            self._unindex(watch)

    def _unindex(self, watch: Watch) -> None:
        on_path = self.by_path[watch.wpath]
        on_path.remove(watch)
        if not on_path:
            del self.by_path[watch.wpath]
            if watch.wpath.startswith("/"):
                self._index.remove(watch.wpath)

    # -- matching ------------------------------------------------------------

    def on_change(self, path: str) -> list[Watch]:
        """Watches that a change at ``path`` fires: on it or an ancestor, within depth."""
        if not self._index:  # no watch on any node: nothing to walk
            return []
        by_path = self.by_path
        found: list[Watch] = []
        levels = 0
        top = path
        while True:
            watches = by_path.get(top)
            if watches:
                self.examined += len(watches)
                below = levels_below(path, top)
                found.extend(w for w in watches if w.depth is None or below <= w.depth)
                levels += 1
            if top == paths.ROOT:
                break
            cut = top.rfind("/")  # paths.parent, inlined: this runs for every change
            top = top[:cut] if cut > 0 else paths.ROOT
        if levels > 1:
            found.sort(key=_order)
        return found

    def on_exactly(self, path: str) -> list[Watch]:
        """Watches on exactly ``path`` (a node removed with an ancestor), in order."""
        watches = self.by_path.get(path)
        if not watches:
            return []
        self.examined += len(watches)
        return sorted(watches, key=_order)

    def watched_below(self, path: str) -> set[str]:
        """Watched paths strictly inside the subtree at ``path``."""
        start = "/" if path == paths.ROOT else path + "/"
        # "0" sorts right after "/", so this is exactly the paths under start.
        stop = start[:-1] + "0"
        found = set(self._index.irange(start, stop, inclusive=(True, False)))
        found.discard(path)
        self.examined += len(found)
        return found

    def on_special(self, name: str, domid: int) -> list[tuple[Watch, str]]:
        """Watches fired by a special event, each with the epath to report.

        A watch on ``@name`` fires with ``@name``, or with ``@name/<domid>`` when
        registered with depth 1; ``@releaseDomain/<domid>`` watches one domain.
        """
        found: list[tuple[Watch, str]] = []
        for watch in self.by_path.get(name, ()):
            found.append((watch, f"{name}/{domid}" if watch.depth == 1 else name))
        specific = f"{name}/{domid}"
        for watch in self.by_path.get(specific, ()):
            found.append((watch, specific))
        self.examined += len(found)
        found.sort(key=lambda pair: _order(pair[0]))
        return found


    # -- events ------------------------------------------------------------------

    def events(self, change: Change, may_hear: MayHear) -> list[Send]:
        """The events of one change, in cxenstored's order.

        Watches on nodes removed inside the subtree fire first, children
        before parents, each with its own path; then the watches on the changed
        node and its ancestors.
        """
        out: list[Send] = []
        unprivileged = self.unprivileged
        if change.removed:
            watched = self.watched_below(change.path)
            for gone, judged_by in change.removed if watched else ():
                if gone in watched:
                    out.extend(
                        watch.event(gone)
                        for watch in self.on_exactly(gone)
                        if may_hear(watch.conn_id, judged_by)
                    )
        path = change.path
        encoded = path.encode()
        judged_by = change.perms
        for watch in self.on_change(path):
            conn_id = watch.conn_id
            if conn_id in unprivileged and not may_hear(conn_id, judged_by):
                continue
            if watch.relative_to is None:
                # tuple.__new__ skips the namedtuples' Python-level __new__: a fan-out
                # to a thousand watchers makes two thousand of them.
                out.append(_new(Send, (conn_id, _new(Packet, (WATCH_EVENT, 0, 0,
                                                             encoded + watch.suffix)))))
            else:
                out.append(watch.event(path))
        return out

    def special_events(self, name: str, domid: int, may_hear: MayHear,
                       perms: Perms) -> list[Send]:
        """The events of ``@introduceDomain`` or ``@releaseDomain`` for ``domid``."""
        return [
            watch.event(epath)
            for watch, epath in self.on_special(name, domid)
            if may_hear(watch.conn_id, (perms,))
        ]


def _order(watch: Watch) -> tuple[int, int]:
    return (watch.conn_id, watch.seq)
