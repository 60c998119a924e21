"""Quotas: what a domain may hold, checked before a request changes anything.

A mixin of :class:`~xenstore.daemon.core.Server`, split out to keep each module
to one concern. Quotas bind unprivileged connections only (cxenstored's rule);
each limit is the domain's own (SET_QUOTA) or else the global one (flags, -Q).
A transaction's own nodes and bytes count while it is open, and its commit is
checked again against what the domain owns by then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenstore.daemon.effects import Effect, Log
from xenstore.errors import ENOMEM, ENOSPC
from xenstore.store import names_of
from xenstore.transactions import Transaction

if TYPE_CHECKING:
    from xenstore.daemon.config import Config
    from xenstore.daemon.core import Connection
    from xenstore.daemon.domains import Domain
    from xenstore.daemon.watches import WatchRegistry
    from xenstore.store import Store, View


class QuotaChecks:
    """The quota checks of the request handlers."""

    if TYPE_CHECKING:  # what the Server provides
        config: Config
        store: Store
        watches: WatchRegistry
        connections: dict[int, Connection]
        domains: dict[int, Domain]
        soft_memory: int
        _effects: list[Effect]

    def _guest_log(self, conn: Connection, text: str) -> None:
        """Log ``text`` about the domain behind ``conn`` (rate-limited per domain)."""
        self._effects.append(Log(f"domain {conn.domid}: {text}", domid=conn.domid))

    def _view(self, conn: Connection, tx: Transaction | None) -> View:
        if tx is None:
            return self.store
        limit = self._quota(conn, "transaction-nodes")
        if not conn.privileged and limit and len(tx.touched) >= limit:
            self._guest_log(conn, "transaction-nodes quota hit")
            raise ENOSPC(f"transaction {tx.tx_id} has touched {limit} nodes")
        return tx

    def _quota(self, conn: Connection, name: str) -> int:
        """The caller's limit ``name`` (0: none): its domain's own, else the global one."""
        return self.quota(conn.domid, name)

    def quota(self, domid: int, name: str) -> int:
        """Domain ``domid``'s limit ``name`` (0: none): its own, else the global one."""
        domain = self.domains.get(domid)
        if domain is not None and name in domain.quotas:
            return domain.quotas[name]
        return self.config.quotas[name]

    def _over(self, conn: Connection, name: str, amount: int) -> bool:
        """Whether ``amount`` exceeds the caller's quota ``name`` (never for dom0)."""
        if conn.privileged:
            return False
        limit = self._quota(conn, name)
        return bool(limit) and amount > limit

    @staticmethod
    def _pending(view: View, conn: Connection) -> tuple[int, int]:
        """The nodes and bytes a transaction would add to ``conn``'s domain (0, 0 outside)."""
        if isinstance(view, Transaction):
            delta = view.owned_delta.get(conn.domid)
            if delta is not None:
                return delta[0], delta[1]
        return 0, 0

    def _check_memory(self, conn: Connection, more: int, view: View | None = None) -> None:
        """The memory quota: what the domain's nodes and watches hold, plus ``more``.

        Over the hard quota the request fails with ENOMEM; crossing the soft
        one (CONTROL quota-soft) is logged, as cxenstored warns.
        """
        if conn.privileged or more <= 0:
            return
        pending = self._pending(view, conn)[1] if view is not None else 0
        held = self.store.owned_bytes.get(conn.domid, 0) + pending + sum(
            len(w.wpath) + len(w.token)
            for c in self.connections.values() if c.domid == conn.domid
            for w in self.watches.by_conn.get(c.conn_id, {}).values()
        )
        if self._over(conn, "memory", held + more):
            self._guest_log(conn, f"memory quota hit ({held} bytes)")
            raise ENOMEM(f"domain {conn.domid} holds {held} bytes")
        if self.soft_memory and held <= self.soft_memory < held + more:
            self._guest_log(conn, "over the memory warning level")

    def _check_size(
        self, conn: Connection, path: str, value_size: int, new_child: str = ""
    ) -> None:
        """The node-size quota: value, perms and child names, as cxenstored counts them."""
        if conn.privileged:
            return
        node = self.store.nodes.get(path)
        names = sum(len(n) + 1 for n in names_of(path, node.children)) if node is not None else 0
        n_perms = len(node.perms) if node is not None else 1
        # cxenstored's record: a 24-byte header, 8 bytes a permission, the value,
        # the child names; it refuses one that reaches the quota.
        size = 24 + 8 * n_perms + value_size + names + (len(new_child) + 1 if new_child else 0)
        if self._over(conn, "node-size", size + 1):
            self._guest_log(conn, f"node-size quota hit at {path}")
            raise ENOSPC(f"node {path} would be {size} bytes")

    def _check_commit_quotas(self, conn: Connection, tx: Transaction) -> None:
        """Refuse a commit that would take its domain over its nodes or memory quota.

        Each transaction was checked against what its domain owned when it wrote;
        several committed one after another must not add up past the quota
        (XSA-326: as many nodes as allowed in as many transactions as allowed).
        """
        nodes, held = self._pending(tx, conn)
        if nodes > 0 and self._over(conn, "nodes", self.store.owned.get(conn.domid, 0) + nodes):
            tx.close()
            self._guest_log(conn, f"nodes quota hit committing transaction {tx.tx_id}")
            raise ENOSPC(f"domain {conn.domid} would own too many nodes")
        if held > 0:
            try:
                self._check_memory(conn, held)
            except ENOMEM:
                tx.close()
                raise
