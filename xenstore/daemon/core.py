"""The pure core: ``Server.handle(conn_id, packet)`` returns the effects to carry out.

No trio, no sockets, no clocks: one request runs to completion without ever
waiting, which makes each request atomic and every behaviour testable with
plain function calls. The shell (:mod:`xenstore.daemon.shell`) feeds packets
in and carries the returned :mod:`effects <xenstore.daemon.effects>` out.

Every request goes through :meth:`Server.handle`, which is also the one place
that turns a :class:`~xenstore.errors.XenStoreError` into an ERROR reply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xenstore import errors, paths, perms
from xenstore.changes import Change
from xenstore.daemon.config import Config
from xenstore.daemon.effects import Effect, Log, Send
from xenstore.daemon.watches import Watch, WatchRegistry
from xenstore.errors import E2BIG, EACCES, EBUSY, EINVAL, ENOENT, ENOSYS, XenStoreError
from xenstore.protocol.codec import Packet, join, split
from xenstore.protocol.ops import PAYLOAD_MAX, Op
from xenstore.store import Node, Store, View
from xenstore.transactions import Transaction

OK = b"OK\0"

CONTROL_HELP = (
    b"help\t\n"
)


@dataclass(slots=True, eq=False)
class Connection:
    """One client: a dom0 socket or (later) a guest's socket."""

    conn_id: int
    domid: int = 0
    privileged: bool = True
    #: The domain this one acts for after SET_TARGET (its rights become ours).
    target: int | None = None
    transactions: dict[int, Transaction] = field(default_factory=dict)
    next_tx_id: int = 1


Handler = Callable[[Connection, "Transaction | None", bytes], bytes]


def one_arg(payload: bytes) -> str:
    """The single NUL-terminated argument of a request, as cxenstored's onearg()."""
    if not payload.endswith(b"\0") or payload.find(b"\0") != len(payload) - 1:
        raise EINVAL("expected exactly one argument")
    # latin-1 never fails; the path grammar then rejects anything not ASCII.
    return payload[:-1].decode("latin-1")


def atoi(text: str) -> int:
    """C's atoi(), then reinterpreted as unsigned 32 bits, as cxenstored prints domids."""
    text = text.lstrip(" \t\n\v\f\r")
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-":
        text = text[1:]
    digits = len(text) - len(text.lstrip("0123456789"))
    value = int(text[:digits]) if digits else 0
    return (sign * value) & 0xFFFFFFFF


class Server:
    """The whole state of a XenStore daemon, and the request handlers."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.store = Store()
        self.connections: dict[int, Connection] = {}
        #: Perms of @introduceDomain and @releaseDomain: they decide who gets those events.
        self.special_perms: dict[str, perms.Perms] = {
            path: perms.owner_only(0) for path in paths.SPECIAL_PATHS
        }
        self.watches = WatchRegistry()
        self._next_conn_id = 1
        #: Effects of the request being handled: watch events, then the reply.
        self._effects: list[Effect] = []
        #: Effects that must follow the reply (WATCH's first event).
        self._after_reply: list[Effect] = []
        self._dispatch: dict[int, Handler] = {
            Op.CONTROL: self._do_control,
            Op.DIRECTORY: self._do_directory,
            Op.READ: self._do_read,
            Op.GET_PERMS: self._do_get_perms,
            Op.WATCH: self._do_watch,
            Op.UNWATCH: self._do_unwatch,
            Op.RESET_WATCHES: self._do_reset_watches,
            Op.TRANSACTION_START: self._do_transaction_start,
            Op.TRANSACTION_END: self._do_transaction_end,
            Op.GET_DOMAIN_PATH: self._do_get_domain_path,
            Op.WRITE: self._do_write,
            Op.MKDIR: self._do_mkdir,
            Op.RM: self._do_rm,
            Op.SET_PERMS: self._do_set_perms,
            Op.DIRECTORY_PART: self._do_directory_part,
        }
        # Ops whose header tx_id is not looked up (cxenstored's XS_FLAG_NOTID).
        self._no_tx_lookup: frozenset[int] = frozenset((Op.WATCH, Op.UNWATCH))

    # -- connections ----------------------------------------------------------

    def connect(self, domid: int = 0, privileged: bool = True) -> int:
        """Register a new connection; returns its id."""
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        self.connections[conn_id] = Connection(conn_id, domid, privileged)
        return conn_id

    def disconnect(self, conn_id: int) -> list[Effect]:
        """Forget a connection: its transactions are aborted, its watches dropped."""
        self.connections.pop(conn_id, None)
        self.watches.remove_all(conn_id)
        return []

    # -- requests -------------------------------------------------------------

    def handle(self, conn_id: int, packet: Packet) -> list[Effect]:
        """Answer one request; returns the effects in the order they must happen."""
        conn = self.connections[conn_id]
        op, req_id, tx_id, payload = packet
        effects: list[Effect] = []
        self._effects = effects
        self._after_reply = []
        try:
            handler = self._dispatch.get(op)
            if handler is None:
                raise ENOSYS(f"op {op}")
            tx = None
            if tx_id and op not in self._no_tx_lookup:
                tx = conn.transactions.get(tx_id)
                if tx is None:
                    raise ENOENT(f"no transaction {tx_id}")
            reply = handler(conn, tx, payload)
        except XenStoreError as exc:
            reply = exc.name.encode() + b"\0"
            op = Op.ERROR
        except Exception as exc:  # a bug must cost one request, not the daemon
            effects.append(Log(f"internal error on {packet!r}: {exc!r}"))
            reply = b"EIO\0"
            op = Op.ERROR
        effects.append(Send(conn_id, Packet(op, req_id, tx_id, reply)))
        if self._after_reply:
            effects.extend(self._after_reply)
            self._after_reply = []
        return effects

    # -- lookups with cxenstored's permission rules ---------------------------

    def _path(self, conn: Connection, path: str) -> str:
        return paths.canonical(path, conn.domid, self.config.path_max)

    def _access(self, conn: Connection, node: Node) -> int:
        if conn.privileged:
            return perms.FULL
        return perms.access_for(node.perms, conn.domid, conn.target)

    def _node(self, conn: Connection, view: View, path: str, need: int) -> Node:
        """The node at ``path`` if ``conn`` has access ``need``, else EACCES or ENOENT."""
        node = view.get(path)
        if node is None:
            raise self._missing(conn, view, path)
        if need & ~self._access(conn, node):
            raise EACCES(path)
        return node

    def _missing(self, conn: Connection, view: View, path: str) -> XenStoreError:
        """ENOENT, unless the caller may not even learn that: EACCES hides existence."""
        _, above = view.nearest_existing(path)
        if self._access(conn, above) & perms.READ:
            return ENOENT(path)
        return EACCES(path)

    def _create(self, conn: Connection, view: View, path: str, value: bytes) -> list[str]:
        """Create a missing node (and missing parents): needs write access above it."""
        _, above = view.nearest_existing(path)
        if self._access(conn, above) & perms.BOTH != perms.BOTH:
            raise EACCES(path)
        return view.create(path, value, None if conn.privileged else conn.domid)

    # -- node operations ------------------------------------------------------

    def _do_read(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        view = tx or self.store
        return self._node(conn, view, self._path(conn, one_arg(payload)), perms.READ).value

    def _do_write(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        cut = payload.find(b"\0")
        if cut < 0:
            raise EINVAL("WRITE needs a path and a value")
        path = self._path(conn, payload[:cut].decode("latin-1"))
        value = payload[cut + 1 :]
        view = tx or self.store
        if view.get(path) is None:
            self._create(conn, view, path, value)
        else:
            self._node(conn, view, path, perms.WRITE)
            view.set_value(path, value)
        self._changed(tx, self._node_change(view, path))
        return OK

    def _do_mkdir(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = tx or self.store
        if view.get(path) is None:
            self._create(conn, view, path, b"")
            self._changed(tx, self._node_change(view, path))
        else:
            self._node(conn, view, path, perms.WRITE)
        return OK

    def _do_rm(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = tx or self.store
        if view.get(path) is None:
            error = self._missing(conn, view, path)
            # Removing what is already gone is fine, if its parent exists.
            if isinstance(error, ENOENT) and view.get(paths.parent(path)) is not None:
                return OK
            raise error
        self._node(conn, view, path, perms.WRITE)
        if path == paths.ROOT:
            raise EINVAL("cannot remove /")
        self._removed(tx, view, path)
        return OK

    def _do_directory(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        view = tx or self.store
        node = self._node(conn, view, self._path(conn, one_arg(payload)), perms.READ)
        listing = join(*node.children) if node.children else b""
        if len(listing) > PAYLOAD_MAX:
            raise E2BIG("directory listing exceeds the payload limit: use DIRECTORY_PART")
        return listing

    def _do_directory_part(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        fields = split(payload)
        if len(fields) != 2 or len(join(*fields)) != len(payload):
            raise EINVAL("DIRECTORY_PART needs a path and an offset")
        view = tx or self.store
        node = self._node(conn, view, self._path(conn, fields[0].decode("latin-1")), perms.READ)
        listing = join(*node.children) if node.children else b""
        offset = atoi(fields[1].decode("latin-1"))
        generation = b"%d\0" % node.generation
        if offset >= len(listing):
            return generation + b"\0"
        # Whole names only, as many as fit beside the generation and the end mark.
        room = PAYLOAD_MAX - len(generation) - 1
        end = offset + room
        if end >= len(listing):
            return generation + listing[offset:] + b"\0"
        end = listing.rfind(b"\0", offset, end) + 1
        return generation + listing[offset:end]

    def _do_get_perms(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        view = tx or self.store
        node = self._node(conn, view, self._path(conn, one_arg(payload)), perms.READ)
        return join(*perms.format_list(node.perms))

    def _do_set_perms(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if len(fields) < 2:
            raise EINVAL("SET_PERMS needs a path and at least one permission")
        new = perms.parse_list([f.decode("latin-1") for f in fields[1:]])
        if new[0].domid >= perms.DOMID_FIRST_RESERVED:
            raise ENOENT("the owner is not a domain")
        raw_path = fields[0].decode("latin-1")
        if paths.is_special(raw_path):
            if raw_path not in paths.SPECIAL_PATHS:
                raise EINVAL(f"no special node {raw_path}")
            if not conn.privileged:
                raise EACCES(raw_path)
            self.special_perms[raw_path] = new
            return OK
        path = self._path(conn, raw_path)
        view = tx or self.store
        node = self._node(conn, view, path, perms.WRITE | perms.OWNER)
        if not conn.privileged and new[0].domid != node.perms[0].domid:
            raise errors.EPERM("only a privileged domain may change a node's owner")
        old = node.perms
        view.set_perms(path, new)
        above = view.get(paths.parent(path))
        assert above is not None
        self._changed(tx, Change(path, (old, new, above.perms)))
        return OK

    # -- watches -------------------------------------------------------------------

    def _do_watch(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if len(fields) not in (2, 3):
            raise EINVAL("WATCH takes a path, a token and an optional depth")
        depth = None
        if len(fields) == 3:
            if not fields[2].isdigit() or len(fields[2]) > 9:
                raise EINVAL("the watch depth must be a small decimal number")
            depth = int(fields[2])
        raw = fields[0].decode("latin-1")
        wpath = paths.canonical_watch(raw, conn.domid, self.config.path_max)
        relative_to = None if raw[:1] in ("/", "@") else paths.home(conn.domid) + "/"
        watch = self.watches.add(conn.conn_id, wpath, fields[1], depth, relative_to)
        # The first event fires at once, after the reply, as cxenstored sends it.
        self._after_reply.append(self._event_packet(watch, wpath))
        return OK

    def _do_unwatch(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if len(fields) != 2:
            raise EINVAL("UNWATCH takes a path and a token")
        raw = fields[0].decode("latin-1")
        # Canonical form without validation: an invalid path is just not watched.
        wpath = raw if raw[:1] in ("/", "@") else f"{paths.home(conn.domid)}/{raw}"
        self.watches.remove(conn.conn_id, wpath, fields[1])
        return OK

    def _do_reset_watches(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        self.watches.remove_all(conn.conn_id)
        conn.transactions.clear()
        return OK

    def _node_change(self, view: View, path: str) -> Change:
        """The change record of a written or created node: its perms and its parent's."""
        node = view.get(path)
        above = view.get(paths.parent(path))
        assert node is not None and above is not None
        return Change(path, (node.perms, above.perms))

    def _removed(self, tx: Transaction | None, view: View, path: str) -> None:
        """Remove a subtree and record what its removal tells watchers."""
        above = view.get(paths.parent(path))
        assert above is not None
        removed = view.remove(path)
        top = removed[-1][1]
        entries: tuple[tuple[str, tuple[perms.Perms, ...]], ...] = ()
        # Watches inside the subtree are rare: only then are its nodes listed.
        if len(removed) > 1 and (tx is not None or self.watches.watched_below(path)):
            node_of = dict(removed)
            entries = tuple(
                (gone, (node.perms, node_of[paths.parent(gone)].perms))
                for gone, node in removed[:-1]
            )
        self._changed(tx, Change(path, (top.perms, above.perms), entries))

    def _changed(self, tx: Transaction | None, change: Change) -> None:
        if tx is not None:
            tx.changes.append(change)
        else:
            self._fire(change)

    def _fire(self, change: Change) -> None:
        """Queue the watch events of one change, in cxenstored's order."""
        registry = self.watches
        if change.removed:
            watched = registry.watched_below(change.path)
            for gone, gone_perms in change.removed if watched else ():
                if gone in watched:
                    for watch in registry.on_exactly(gone):
                        self._event(watch, gone, gone_perms)
        for watch in registry.on_change(change.path):
            self._event(watch, change.path, change.perms)

    def fire_special(self, name: str, domid: int) -> list[Effect]:
        """Events of ``@introduceDomain`` or ``@releaseDomain`` for ``domid``."""
        effects: list[Effect] = []
        special = self.special_perms[name]
        for watch, epath in self.watches.on_special(name, domid):
            conn = self.connections[watch.conn_id]
            if conn.privileged or perms.access_for(special, conn.domid, conn.target) & perms.READ:
                effects.append(self._event_packet(watch, epath))
        return effects

    def _event(self, watch: Watch, path: str, judged_by: tuple[perms.Perms, ...]) -> None:
        conn = self.connections[watch.conn_id]
        if not conn.privileged and not any(
            perms.access_for(p, conn.domid, conn.target) & perms.READ for p in judged_by
        ):
            return
        self._effects.append(self._event_packet(watch, path))

    @staticmethod
    def _event_packet(watch: Watch, path: str) -> Send:
        payload = watch.epath(path).encode() + b"\0" + watch.token + b"\0"
        return Send(watch.conn_id, Packet(Op.WATCH_EVENT, 0, 0, payload))

    # -- transactions ------------------------------------------------------------

    def _do_transaction_start(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        if tx is not None:
            raise EBUSY("already in a transaction")
        tx_id = conn.next_tx_id
        conn.next_tx_id = tx_id + 1 if tx_id < 0xFFFFFFFF else 1
        conn.transactions[tx_id] = Transaction(self.store, tx_id)
        return b"%d\0" % tx_id

    def _do_transaction_end(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        if payload not in (b"T\0", b"F\0"):
            raise EINVAL("TRANSACTION_END takes T or F")
        if tx is None:
            raise ENOENT("no transaction")
        del conn.transactions[tx.tx_id]
        if payload == b"T\0":
            tx.commit()
            for change in tx.changes:
                self._fire(change)
        return OK

    # -- domains and control ---------------------------------------------------

    def _do_get_domain_path(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        return paths.home(atoi(one_arg(payload))).encode() + b"\0"

    def _do_control(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if not fields or fields[0] != b"help":
            raise EINVAL("unknown CONTROL command")
        return CONTROL_HELP + b"\0"
