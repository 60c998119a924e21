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
from xenstore.daemon.config import Config
from xenstore.daemon.effects import Effect, Log, Send
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
        self._next_conn_id = 1
        self._dispatch: dict[int, Handler] = {
            Op.CONTROL: self._do_control,
            Op.DIRECTORY: self._do_directory,
            Op.READ: self._do_read,
            Op.GET_PERMS: self._do_get_perms,
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
        """Forget a connection: its transactions are aborted."""
        self.connections.pop(conn_id, None)
        return []

    # -- requests -------------------------------------------------------------

    def handle(self, conn_id: int, packet: Packet) -> list[Effect]:
        """Answer one request; returns the effects in the order they must happen."""
        conn = self.connections[conn_id]
        op, req_id, tx_id, payload = packet
        effects: list[Effect] = []
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
        return OK

    def _do_mkdir(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = tx or self.store
        if view.get(path) is None:
            self._create(conn, view, path, b"")
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
        view.remove(path)
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
        view.set_perms(path, new)
        return OK

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
