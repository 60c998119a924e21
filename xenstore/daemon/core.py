"""The pure core: ``Server.handle(conn_id, packet)`` returns the effects to carry out.

No trio, no sockets, no clocks: one request runs to completion without ever
waiting, which makes each request atomic and every behaviour testable with
plain function calls. The shell (:mod:`xenstore.daemon.shell`) feeds packets
in and carries the returned :mod:`effects <xenstore.daemon.effects>` out.

The server is composed, not mixed in: its state lives in one
:class:`~xenstore.daemon.state.ServerState`, and each concern is an object that
takes what it needs: :class:`~.quotas.Quotas`, :class:`~.access.Access` (who may
do what), :class:`~.nodes.NodeOps`, :class:`~.watch_ops.WatchOps`,
:class:`~.tx_ops.TransactionOps` with the conflict explainer,
:class:`~.domain_ops.DomainOps` and :class:`~.control.ControlOps`. A request's
effects leave through one :class:`~.effects.Outbox`. :meth:`Server.handle` is
the one place that turns a :class:`~xenstore.errors.XenStoreError` into an
ERROR reply, and a bug into EIO.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from xenstore.daemon.access import Access
from xenstore.daemon.config import Config
from xenstore.daemon.control import Command, ControlOps
from xenstore.daemon.domain_ops import DomainOps
from xenstore.daemon.domains import Domain
from xenstore.daemon.effects import Effect, Outbox, Send
from xenstore.daemon.faults import Faults
from xenstore.daemon.nodes import NodeOps
from xenstore.daemon.quotas import Quotas
from xenstore.daemon.state import Connection, ServerState
from xenstore.daemon.tx_ops import ConflictExplainer, TransactionOps
from xenstore.daemon.watch_ops import WatchOps
from xenstore.daemon.watches import WatchRegistry
from xenstore.errors import EACCES, ENOENT, ENOSYS, XenStoreError
from xenstore.perms import Perms
from xenstore.protocol.codec import Packet, describe
from xenstore.protocol.ops import OPS, PAYLOAD_MAX, Op
from xenstore.store import Store
from xenstore.transactions import Transaction

__all__ = ["Connection", "Handler", "Server"]

_new = tuple.__new__
_READ = int(Op.READ)

#: A request handler: the caller, its transaction (or None), the payload, where its
#: effects go; returns the reply's payload or raises a XenStoreError.
Handler = Callable[[Connection, "Transaction | None", bytes, Outbox], bytes]


class Server:
    """A XenStore daemon's state and request handlers, composed."""

    def __init__(self, config: Config | None = None) -> None:
        self.state = state = ServerState(config or Config())
        self.quotas = Quotas(state)
        self.access = Access(state, self.quotas)
        self.explainer = ConflictExplainer(state.config.log_conflicts)
        self.transactions: TransactionOps
        self.watch_ops = WatchOps(state, self.access, self.quotas,
                                  lambda conn: self.transactions.abort_all(conn))
        self.transactions = TransactionOps(state, self.quotas, self.watch_ops, self.explainer)
        self.nodes = NodeOps(state, self.access, self.quotas, self.watch_ops)
        self.domain_ops = DomainOps(state, self.watch_ops, self.transactions, self.disconnect)
        self.control = ControlOps(state, self.quotas, self.domain_ops, self.explainer)
        self._dispatch: dict[int, Handler] = self._handlers()
        #: Whether dom0's READs outside transactions take the short way (tests compare).
        self.fast_read = True

    def _handlers(self) -> dict[int, Handler]:
        nodes, watch, tx, dom = self.nodes, self.watch_ops, self.transactions, self.domain_ops
        return {
            Op.CONTROL: self.control.control,
            Op.DIRECTORY: nodes.directory, Op.READ: nodes.read, Op.GET_PERMS: nodes.get_perms,
            Op.WATCH: watch.watch, Op.UNWATCH: watch.unwatch,
            Op.TRANSACTION_START: tx.start, Op.TRANSACTION_END: tx.end,
            Op.GET_DOMAIN_PATH: nodes.get_domain_path, Op.WRITE: nodes.write,
            Op.MKDIR: nodes.mkdir, Op.RM: nodes.rm, Op.SET_PERMS: nodes.set_perms,
            Op.RESET_WATCHES: watch.reset_watches, Op.DIRECTORY_PART: nodes.directory_part,
            Op.INTRODUCE: dom.introduce, Op.RELEASE: dom.release,
            Op.IS_DOMAIN_INTRODUCED: dom.is_domain_introduced, Op.RESUME: dom.resume,
            Op.SET_TARGET: dom.set_target, Op.GET_FEATURE: dom.get_feature,
            Op.SET_FEATURE: dom.set_feature, Op.GET_QUOTA: dom.get_quota,
            Op.SET_QUOTA: dom.set_quota,
        }

    # -- what the shell, the tools and the tests read -----------------------------

    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def store(self) -> Store:
        return self.state.store

    @property
    def connections(self) -> dict[int, Connection]:
        return self.state.connections

    @property
    def domains(self) -> dict[int, Domain]:
        return self.state.domains

    @property
    def watches(self) -> WatchRegistry:
        return self.state.watches

    @property
    def special_perms(self) -> dict[str, Perms]:
        return self.state.special_perms

    @property
    def pending_features(self) -> dict[int, int]:
        return self.state.pending_features

    @property
    def _open_by_domain(self) -> dict[int, int]:
        return self.state.open_by_domain

    @property
    def soft_memory(self) -> int:
        return self.quotas.soft_memory

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def reporters(self) -> list[Callable[[], list[str]]]:
        return self.state.reporters

    @property
    def conflicts(self) -> deque[str]:
        return self.explainer.conflicts

    def quota(self, domid: int, name: str) -> int:
        """Domain ``domid``'s limit ``name`` (0: none)."""
        return self.quotas.limit(domid, name)

    def control_commands(self) -> dict[bytes, Command]:
        return self.control.control_commands()

    def fire_special(self, name: str, domid: int) -> list[Effect]:
        return self.watch_ops.fire_special(name, domid)

    def domain_died(self, domid: int, dead: bool) -> list[Effect]:
        """What Xen would tell: the domain shut down, or (``dead``) died."""
        out = Outbox()
        self.domain_ops.domain_died(domid, dead, out)
        return out.effects

    # -- connections ---------------------------------------------------------------

    def connect(self, domid: int = 0, privileged: bool = True) -> int:
        """Register a new connection; returns its id."""
        state = self.state
        conn_id = state.next_conn_id
        state.next_conn_id += 1
        domain = state.domains.get(domid)
        target = domain.target if domain is not None else None
        state.connections[conn_id] = Connection(conn_id, domid, privileged, target)
        if not privileged:
            state.watches.unprivileged.add(conn_id)
        return conn_id

    def disconnect(self, conn_id: int) -> list[Effect]:
        """Forget a connection: its transactions are aborted, its watches dropped."""
        self.control.live_update.forget(conn_id)
        conn = self.state.connections.pop(conn_id, None)
        if conn is not None:
            self.transactions.abort_all(conn)
        self.state.watches.remove_all(conn_id)
        self.state.watches.unprivileged.discard(conn_id)
        return []

    # -- requests ----------------------------------------------------------------

    def handle(self, conn_id: int, packet: Packet) -> list[Effect]:
        """Answer one request; returns the effects in the order they must happen."""
        conn = self.state.connections[conn_id]
        op, req_id, tx_id, payload = packet
        if op == _READ and not tx_id and conn.privileged and self.fast_read:
            value = self._read_fast(conn, payload)
            if value is not None:
                return [_new(Send, (conn_id, _new(Packet, (op, req_id, 0, value))))]
        out = Outbox()
        store = self.state.store
        before = store.generation
        try:
            handler = self._dispatch.get(op)
            spec = OPS.get(op)
            if handler is None or spec is None:
                raise ENOSYS(f"op {op}")
            if spec.privileged and not conn.privileged:
                raise EACCES(f"{spec.name} is for privileged domains only")
            tx = None
            if tx_id and spec.in_transaction:
                tx = conn.transactions.get(tx_id)
                if tx is None:
                    raise ENOENT(f"no transaction {tx_id}")
            reply = handler(conn, tx, payload, out)
        except XenStoreError as exc:
            reply = exc.name.encode() + b"\0"
            op = Op.ERROR
        except Exception as exc:  # a bug must cost one request, not the daemon
            reply = self._internal_error(conn, packet, exc, out)
            op = Op.ERROR
        if len(reply) > PAYLOAD_MAX:  # a handler's bug: never put it on the wire
            out.log(f"internal error on {describe(packet)} from connection {conn_id}: a "
                    f"reply of {len(reply)} bytes, over {PAYLOAD_MAX}; answered E2BIG",
                    domid=None if conn.privileged else conn.domid)
            reply = b"E2BIG\0"
            op = Op.ERROR
        if store.generation != before:
            self.explainer.remember(store.generation, conn, packet)
        effects = out.effects
        # tuple.__new__ skips the namedtuples' Python-level __new__ (~100 ns each).
        effects.append(_new(Send, (conn_id, _new(Packet, (op, req_id, tx_id, reply)))))
        if out.after_reply:
            effects.extend(out.after_reply)
        return effects

    def _read_fast(self, conn: Connection, payload: bytes) -> bytes | None:
        """The value a privileged READ outside a transaction gets, or None to take the
        general way (which answers every error). The most common request pays for no
        dispatch, Outbox or error handling: it has no checks to make, changes nothing
        and fires nothing (``tests/core/test_fast_read.py`` compares both ways)."""
        if payload.find(b"\0") != len(payload) - 1:  # one NUL-terminated argument
            return None
        try:
            path = self.access.path(conn, payload[:-1].decode("latin-1"))
        except XenStoreError:
            return None
        node = self.state.store.node(path)
        return None if node is None else node.value

    def _internal_error(self, conn: Connection, packet: Packet, exc: Exception,
                        out: Outbox) -> bytes:
        out.log(f"internal error on {describe(packet)} from connection {conn.conn_id}: "
                f"{exc!r}", domid=None if conn.privileged else conn.domid)
        # The change it interrupted may be half done: the tree must stay sound.
        for line in self.state.store.repair():
            out.log(f"repaired after the internal error: {line}", logging.ERROR)
        return b"EIO\0"
