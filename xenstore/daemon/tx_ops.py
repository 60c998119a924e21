"""TRANSACTION_START and TRANSACTION_END, and the explainer of refused commits.

A commit is refused (EAGAIN) only when something the transaction read changed
under it (see :mod:`xenstore.transactions`); the explainer names the path, what
of it changed and the commit that changed it, for the log and CONTROL
``conflicts``. It remembers the latest commits by generation, as facts: words
are made only when a conflict is explained.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from xenstore import errors
from xenstore.daemon.effects import Outbox
from xenstore.errors import EBUSY, EINVAL, ENOENT, XenStoreError
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op, op_name
from xenstore.transactions import Transaction, TransactionConflict

if TYPE_CHECKING:
    from xenstore.daemon.quotas import Quotas
    from xenstore.daemon.state import Connection, ServerState
    from xenstore.daemon.watch_ops import WatchOps

OK = b"OK\0"
#: How many recent commits the conflict explainer can name.
COMMITS_REMEMBERED = 4096
#: How many explanations CONTROL conflicts keeps.
CONFLICTS_KEPT = 100


class ConflictExplainer:
    """Who made a commit fail: the latest commits, and the latest refusals explained."""

    def __init__(self, log_conflicts: bool) -> None:
        self.log_conflicts = log_conflicts
        #: A ring indexed by generation: (generation, conn_id, domid, op, tx_id, argument).
        self._commits: list[tuple[int, int, int, int, int, bytes] | None] = (
            [None] * COMMITS_REMEMBERED)
        #: The latest refused commits, explained (CONTROL conflicts).
        self.conflicts: deque[str] = deque(maxlen=CONFLICTS_KEPT)

    def remember(self, generation: int, conn: Connection, packet: Packet) -> None:
        self._commits[generation % COMMITS_REMEMBERED] = (
            generation, conn.conn_id, conn.domid, packet.op, packet.tx_id, packet.payload[:80])

    def committer(self, generation: int) -> str:
        entry = self._commits[generation % COMMITS_REMEMBERED]
        if entry is None or entry[0] != generation:
            return "a commit no longer remembered"
        _, conn_id, domid, op, tx_id, payload = entry
        who = f"connection {conn_id} (domain {domid})"
        if op == Op.TRANSACTION_END:
            return f"{who} committing transaction {tx_id}"
        detail = payload.partition(b"\0")[0].decode("latin-1")
        return f"{who} {op_name(op)} {detail}"

    def explain(self, conn: Connection, tx: Transaction, refused: XenStoreError,
                out: Outbox) -> None:
        """Say which path and which commit made a commit fail (log and CONTROL conflicts)."""
        lines = []
        conflicts = refused.conflicts if isinstance(refused, TransactionConflict) else []
        for conflict in conflicts[:5]:
            lines.append(
                f"transaction {tx.tx_id} of connection {conn.conn_id} (domain {conn.domid}) "
                f"refused: the {conflict.aspect} of {conflict.path} it read was changed by "
                f"commit {conflict.changed_by}: {self.committer(conflict.changed_by)}")
        for line in lines or [str(refused)]:
            self.conflicts.append(line)
            if self.log_conflicts:
                out.log(line, logging.INFO)  # retried conflicts are routine: -V shows them


class TransactionOps:
    """The transaction requests of ``state``'s connections."""

    def __init__(self, state: ServerState, quotas: Quotas, watches: WatchOps,
                 explainer: ConflictExplainer) -> None:
        self.state = state
        self.quotas = quotas
        self.watches = watches
        self.explainer = explainer

    def start(self, conn: Connection, tx: Transaction | None, payload: bytes,
              out: Outbox) -> bytes:
        if tx is not None:
            raise EBUSY("already in a transaction")
        if not conn.privileged:  # dom0 has no transactions quota
            self.quotas.open_transaction(conn, out)
        tx_id = conn.next_tx_id
        while tx_id in conn.transactions or tx_id == 0:
            tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.transactions[tx_id] = Transaction(self.state.store, tx_id)
        return b"%d\0" % tx_id

    def end(self, conn: Connection, tx: Transaction | None, payload: bytes,
            out: Outbox) -> bytes:
        if payload not in (b"T\0", b"F\0"):
            raise EINVAL("TRANSACTION_END takes T or F")
        if tx is None:
            raise ENOENT("no transaction")
        self.forget(conn, tx)
        if payload == b"F\0":
            tx.close()
            return OK
        if not conn.privileged:  # dom0 has no quota to keep to
            self.quotas.check_commit(conn, tx, out)
        faults = self.state.faults
        if faults.eagain and faults.refuse_commit(conn.domid):
            tx.close()  # aborted, as a refused commit is
            refused = errors.EAGAIN(
                f"transaction {tx.tx_id} of connection {conn.conn_id} (domain {conn.domid}) "
                "refused by an injected fault (CONTROL fault eagain)")
            self.explainer.explain(conn, tx, refused, out)
            raise refused
        try:
            changes = tx.commit()
        except errors.EAGAIN as refused:
            self.explainer.explain(conn, tx, refused, out)
            raise
        for change in changes:
            self.watches.fire(change, out)
        return OK

    def forget(self, conn: Connection, tx: Transaction) -> None:
        del conn.transactions[tx.tx_id]
        if not conn.privileged:
            self.quotas.close_transaction(conn)

    def abort_all(self, conn: Connection) -> None:
        for tx in list(conn.transactions.values()):
            self.forget(conn, tx)
            tx.close()
