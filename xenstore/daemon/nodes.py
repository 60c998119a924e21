"""The node requests: READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS,
SET_PERMS, GET_DOMAIN_PATH.

Each reads and changes the tree through a :class:`~xenstore.store.View`: the store
itself, or the caller's transaction, which records what it read. Changes return
the :class:`~xenstore.changes.Change` whose watch events fire now (outside a
transaction) or at commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenstore import errors, paths, perms
from xenstore.daemon.access import c_atoi, one_arg
from xenstore.daemon.effects import Outbox
from xenstore.errors import E2BIG, EACCES, EINVAL, ENOENT
from xenstore.protocol.codec import join, split
from xenstore.protocol.ops import PAYLOAD_MAX

if TYPE_CHECKING:
    from xenstore.daemon.access import Access
    from xenstore.daemon.quotas import Quotas
    from xenstore.daemon.state import Connection, ServerState
    from xenstore.daemon.watch_ops import WatchOps
    from xenstore.store import View
    from xenstore.transactions import Transaction

OK = b"OK\0"


class NodeOps:
    """The tree's requests, checked by ``access`` and ``quotas``, firing through ``watches``."""

    def __init__(self, state: ServerState, access: Access, quotas: Quotas,
                 watches: WatchOps) -> None:
        self.state = state
        self.access = access
        self.quotas = quotas
        self.watches = watches

    def _injected_write_error(self, path: str) -> None:
        """Raise the error CONTROL fault write-errno armed for ``path``, if any."""
        faults = self.state.faults
        if faults.write_errnos:  # nothing to walk on a daemon without faults
            error = faults.write_error(path)
            if error is not None:
                raise error

    def read(self, conn: Connection, tx: Transaction | None, payload: bytes,
             out: Outbox) -> bytes:
        path = self.access.path(conn, one_arg(payload))
        if conn.privileged:  # dom0: no access check or quota to make
            value = (self.state.store if tx is None else tx).get(path)
            if value is None:
                raise ENOENT(path)
            return value
        view = self.quotas.view(conn, tx, out)
        self.access.check(conn, view, path, perms.READ)
        return view.value(path)

    def write(self, conn: Connection, tx: Transaction | None, payload: bytes,
              out: Outbox) -> bytes:
        cut = payload.find(b"\0")
        if cut < 0:
            raise EINVAL("WRITE needs a path and a value")
        path = self.access.path(conn, payload[:cut].decode("latin-1"))
        self._injected_write_error(path)
        if conn.privileged:  # dom0: no access check or quota to make (a transaction's
            into: View = self.state.store if tx is None else tx  # write records its reads)
            self.watches.fire(into.write(path, payload[cut + 1:], None), out)
            return OK
        view = self.quotas.view(conn, tx, out)
        self.quotas.check_size(conn, path, len(payload) - cut - 1, out)
        self.quotas.check_memory(conn, len(payload), out, view)
        if view.exists(path):
            if not self.access.may(conn, view, path, perms.WRITE):
                raise EACCES(path)
        else:
            self.access.check_create(conn, view, path, out)
        self.watches.fire(view.write(path, payload[cut + 1:], self.access.owner(conn)), out)
        return OK

    def mkdir(self, conn: Connection, tx: Transaction | None, payload: bytes,
              out: Outbox) -> bytes:
        path = self.access.path(conn, one_arg(payload))
        self._injected_write_error(path)
        view = self.quotas.view(conn, tx, out)
        if view.exists(path):
            if not self.access.may(conn, view, path, perms.WRITE):
                raise EACCES(path)
            return OK
        self.access.check_create(conn, view, path, out)
        self.watches.fire(view.mkdir(path, self.access.owner(conn)), out)
        return OK

    def rm(self, conn: Connection, tx: Transaction | None, payload: bytes,
           out: Outbox) -> bytes:
        path = self.access.path(conn, one_arg(payload))
        self._injected_write_error(path)
        view = self.quotas.view(conn, tx, out)
        if not view.exists(path):
            error = self.access.missing(conn, view, path, perms.WRITE)
            # Removing what is already gone is fine, if its parent exists.
            if isinstance(error, ENOENT) and view.exists(paths.parent(path)):
                return OK
            raise error
        if not self.access.may(conn, view, path, perms.WRITE):
            raise EACCES(path)
        if path == paths.ROOT:
            raise EINVAL("cannot remove /")
        # Removed nodes are only listed when someone watches inside the subtree.
        watched = bool(self.state.watches.watched_below(path))
        self.watches.fire(view.remove(path, watched), out)
        return OK

    def directory(self, conn: Connection, tx: Transaction | None, payload: bytes,
                  out: Outbox) -> bytes:
        path = self.access.path(conn, one_arg(payload))
        view = self.quotas.view(conn, tx, out)
        if tx is None and conn.privileged:  # dom0 outside a transaction: one lookup
            try:
                listing = view.listing(path)
            except KeyError:
                raise ENOENT(path) from None
        else:
            self.access.check(conn, view, path, perms.READ)
            listing = view.listing(path)
        if len(listing) > PAYLOAD_MAX:
            raise E2BIG("directory listing exceeds the payload limit: use DIRECTORY_PART")
        return listing

    def directory_part(self, conn: Connection, tx: Transaction | None, payload: bytes,
                       out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) != 2 or len(join(*fields)) != len(payload):
            raise EINVAL("DIRECTORY_PART needs a path and an offset")
        path = self.access.path(conn, fields[0].decode("latin-1"))
        view = self.quotas.view(conn, tx, out)
        self.access.check(conn, view, path, perms.READ)
        listing = view.listing(path)
        offset = c_atoi(fields[1].decode("latin-1"))
        generation = b"%d\0" % view.gencnt(path)
        if offset >= len(listing):
            return generation + b"\0"
        # Whole names only, as many as fit beside the generation and the end mark.
        end = offset + PAYLOAD_MAX - len(generation) - 1
        if end >= len(listing):
            return generation + listing[offset:] + b"\0"
        end = listing.rfind(b"\0", offset, end) + 1
        return generation + listing[offset:end]

    def get_perms(self, conn: Connection, tx: Transaction | None, payload: bytes,
                  out: Outbox) -> bytes:
        path = self.access.path(conn, one_arg(payload))
        view = self.quotas.view(conn, tx, out)
        self.access.check(conn, view, path, perms.READ)
        return join(*perms.format_list(view.perms(path)))

    def set_perms(self, conn: Connection, tx: Transaction | None, payload: bytes,
                  out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) < 2:
            raise EINVAL("SET_PERMS needs a path and at least one permission")
        self.quotas.check_permissions(conn, len(fields) - 1, out)
        new = perms.parse_list([f.decode("latin-1") for f in fields[1:]])
        if new[0].domid >= perms.DOMID_FIRST_RESERVED:
            raise ENOENT("the owner is not a domain")
        raw_path = fields[0].decode("latin-1")
        if paths.is_special(raw_path):
            if raw_path not in paths.SPECIAL_PATHS:
                raise EINVAL(f"no special node {raw_path}")
            if not conn.privileged:
                raise EACCES(raw_path)
            self.state.special_perms[raw_path] = new
            return OK
        path = self.access.path(conn, raw_path)
        self._injected_write_error(path)
        view = self.quotas.view(conn, tx, out)
        self.access.check(conn, view, path, perms.WRITE | perms.OWNER)
        if not conn.privileged and new[0].domid != view.perms(path)[0].domid:
            raise errors.EPERM("only a privileged domain may change a node's owner")
        self.watches.fire(view.set_perms(path, new), out)
        return OK

    def get_domain_path(self, conn: Connection, tx: Transaction | None, payload: bytes,
                        out: Outbox) -> bytes:
        return paths.home(c_atoi(one_arg(payload))).encode() + b"\0"
