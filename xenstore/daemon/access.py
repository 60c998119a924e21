"""Who may do what, by cxenstored's rules: path canonical forms, access checks, and
the errors that must not reveal what a caller may not see.

Dom0's connections (privileged) may do everything; a guest gets the access its
node's permissions give it or the domain it acts for (SET_TARGET). A missing
node is ENOENT only if its nearest existing ancestor grants the access asked for
(read to read, write to write or remove); otherwise EACCES hides that it is
missing. Creating a node needs write access to its nearest existing ancestor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenstore import paths, perms
from xenstore.daemon.effects import Outbox
from xenstore.errors import EACCES, EINVAL, ENOENT, XenStoreError

if TYPE_CHECKING:
    from xenstore.daemon.quotas import Quotas
    from xenstore.daemon.state import Connection, ServerState
    from xenstore.store import View


def one_arg(payload: bytes) -> str:
    """The single NUL-terminated argument of a request, as cxenstored's onearg()."""
    if not payload.endswith(b"\0") or payload.find(b"\0") != len(payload) - 1:
        raise EINVAL("expected exactly one argument")
    # latin-1 never fails; the path grammar then rejects anything not ASCII.
    return payload[:-1].decode("latin-1")


def c_atoi(text: str) -> int:
    """C's atoi(), then reinterpreted as unsigned 32 bits, as cxenstored prints domids."""
    text = text.lstrip(" \t\n\v\f\r")
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-":
        text = text[1:]
    digits = len(text) - len(text.lstrip("0123456789"))
    value = int(text[:digits]) if digits else 0
    return (sign * value) & 0xFFFFFFFF


def nearest_existing(view: View, path: str) -> str:
    while True:
        path = paths.parent(path)
        if view.exists(path):
            return path


class Access:
    """The permission decisions of ``state``'s connections."""

    def __init__(self, state: ServerState, quotas: Quotas) -> None:
        self.state = state
        self.quotas = quotas

    def path(self, conn: Connection, path: str) -> str:
        """``path`` in canonical form for ``conn`` (relative to its home), within path-max."""
        return paths.canonical(path, conn.domid, self.quotas.limit(conn.domid, "path-max"))

    @staticmethod
    def may(conn: Connection, view: View, path: str, need: int) -> bool:
        if conn.privileged:
            return True
        have = perms.access_for(view.perms(path), conn.domid, conn.target)
        return need & have == need

    def check(self, conn: Connection, view: View, path: str, need: int) -> None:
        """Pass if ``path`` exists and ``conn`` has access ``need``; else ENOENT or EACCES."""
        if not view.exists(path):
            raise self.missing(conn, view, path, need)
        if not self.may(conn, view, path, need):
            raise EACCES(path)

    def missing(self, conn: Connection, view: View, path: str,
                need: int = perms.READ) -> XenStoreError:
        """ENOENT, unless the caller may not even learn that: EACCES hides existence."""
        if conn.privileged:
            return ENOENT(path)
        above = nearest_existing(view, path)
        return ENOENT(path) if self.may(conn, view, above, need & perms.BOTH) else EACCES(path)

    def check_create(self, conn: Connection, view: View, path: str, out: Outbox) -> None:
        """Creating ``path``: write access to its nearest existing ancestor (not read),
        and room for the nodes it makes in the caller's quotas."""
        if conn.privileged:
            return
        above = nearest_existing(view, path)
        if not self.may(conn, view, above, perms.WRITE):
            raise EACCES(path)
        levels = path.count("/") - (above.count("/") if above != paths.ROOT else 0)
        self.quotas.check_nodes(conn, view, path, levels, out)
        self.quotas.check_size(conn, above, 0, out, path[len(above):].lstrip("/").split("/")[0])

    @staticmethod
    def owner(conn: Connection) -> int | None:
        """Who owns what ``conn`` creates: its domain, or (dom0) the parent's owner."""
        return None if conn.privileged else conn.domid

    def may_hear(self, conn_id: int, judged_by: tuple[perms.Perms, ...]) -> bool:
        """Whether a watch event reaches ``conn_id``: it may read the node (or, for a
        removal, its parent or the node's old perms)."""
        conn = self.state.connections[conn_id]
        return conn.privileged or any(
            perms.access_for(p, conn.domid, conn.target) & perms.READ for p in judged_by
        )
