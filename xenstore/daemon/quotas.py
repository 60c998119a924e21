"""Quotas: everything about what a domain may hold, in one place.

The defaults and wire names (GET_QUOTA/SET_QUOTA), the daemon's flags that set
them, the words CONTROL ``quota`` prints, and every check. Quotas bind
unprivileged connections only (cxenstored's rule), except ``path-max``, which
4.17 applies to dom0 too; each limit is the domain's own (SET_QUOTA) or else the
global one (flags, -Q). A transaction's own nodes and bytes count while it is
open, and its commit is checked again against what the domain owns by then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenstore.daemon.effects import Outbox
from xenstore.errors import ENOMEM, ENOSPC

if TYPE_CHECKING:
    from xenstore.daemon.state import Connection, ServerState
    from xenstore.store import View
    from xenstore.transactions import Transaction

#: Quotas by their wire names, with current cxenstored's defaults (0: no limit).
DEFAULTS: dict[str, int] = {
    "nodes": 1000,
    "watches": 128,
    "transactions": 10,
    "outstanding": 20,
    "memory": 2621440,
    "node-size": 2048,
    "permissions": 5,
    "path-max": 2048,
    "transaction-nodes": 1024,
}

#: The words cxenstored's CONTROL ``quota`` prints for each quota, in its order.
LABELS = {
    "nodes": "Nodes per domain",
    "watches": "Watches per domain",
    "transactions": "Transactions per domain",
    "outstanding": "Outstanding requests per domain",
    "transaction-nodes": "Max. number of accessed nodes per transaction",
    "memory": "Total Xenstore memory per domain (error level)",
    "node-size": "Max. size of a node",
    "path-max": "Max. length of a node path",
    "permissions": "Max. number of permissions per node",
}

#: cxenstored's quota flags (the daemon's option names) and the quota each sets.
FLAGS = {
    "entry_nb": "nodes",
    "entry_size": "node-size",
    "watch_nb": "watches",
    "transaction": "transactions",
    "perm_nb": "permissions",
    "path_max": "path-max",
}

#: The memory quota's warning level (CONTROL quota-soft), as a share of the hard one.
SOFT_SHARE = 0.8


class Quotas:
    """The limits of ``state``'s domains and the checks of the request handlers."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        for name, value in DEFAULTS.items():  # what the flags did not set
            state.config.quotas.setdefault(name, value)
        #: The memory quota's warning level (CONTROL quota-soft), in bytes.
        self.soft_memory = int(state.config.quotas["memory"] * SOFT_SHARE)

    # -- limits --------------------------------------------------------------------

    def limit(self, domid: int, name: str) -> int:
        """Domain ``domid``'s limit ``name`` (0: none): its own, else the global one."""
        domain = self.state.domains.get(domid)
        if domain is not None and name in domain.quotas:
            return domain.quotas[name]
        return self.state.config.quotas[name]

    def over(self, conn: Connection, name: str, amount: int) -> bool:
        """Whether ``amount`` exceeds the caller's quota ``name`` (never for dom0)."""
        if conn.privileged:
            return False
        limit = self.limit(conn.domid, name)
        return bool(limit) and amount > limit

    @staticmethod
    def refuse(out: Outbox, conn: Connection, what: str) -> None:
        """Log a refusal of ``conn``'s domain (the shell rate-limits a guest's lines)."""
        out.log(f"domain {conn.domid}: {what}", domid=conn.domid)

    # -- usage ---------------------------------------------------------------------

    def watches_of(self, domid: int) -> int:
        watches = self.state.watches.by_conn
        return sum(len(watches.get(c.conn_id, ())) for c in self.state.domain_connections(domid))

    def watch_bytes(self, domid: int) -> int:
        watches = self.state.watches.by_conn
        return sum(len(w.wpath) + len(w.token) for c in self.state.domain_connections(domid)
                   for w in watches.get(c.conn_id, {}).values())

    # -- checks --------------------------------------------------------------------

    def view(self, conn: Connection, tx: Transaction | None, out: Outbox) -> View:
        """What a request reads and changes: the store, or its transaction while that
        has touched fewer nodes than the transaction-nodes quota."""
        if tx is None:
            return self.state.store
        if conn.privileged:
            return tx
        limit = self.limit(conn.domid, "transaction-nodes")
        if limit and len(tx.touched) >= limit:
            self.refuse(out, conn, "transaction-nodes quota hit")
            raise ENOSPC(f"transaction {tx.tx_id} has touched {limit} nodes")
        return tx

    def check_memory(self, conn: Connection, more: int, out: Outbox,
                     view: View | None = None) -> None:
        """The memory quota: what the domain's nodes and watches hold, plus ``more``.

        Over the hard quota the request fails with ENOMEM; crossing the soft one
        (CONTROL quota-soft) is logged, as cxenstored warns.
        """
        if conn.privileged or more <= 0:
            return
        pending = view.pending_usage(conn.domid)[1] if view is not None else 0
        held = (self.state.store.owned_bytes.get(conn.domid, 0) + pending
                + self.watch_bytes(conn.domid))
        if self.over(conn, "memory", held + more):
            self.refuse(out, conn, f"memory quota hit ({held} bytes)")
            raise ENOMEM(f"domain {conn.domid} holds {held} bytes")
        if self.soft_memory and held <= self.soft_memory < held + more:
            self.refuse(out, conn, "over the memory warning level")

    def check_size(self, conn: Connection, path: str, value_size: int, out: Outbox,
                   new_child: str = "") -> None:
        """The node-size quota: value, perms and child names, as cxenstored counts them."""
        if conn.privileged:
            return
        store = self.state.store
        # A listing is each child's name and a NUL: what the record holds of them.
        names, n_perms = ((len(store.listing(path)), len(store.perms(path)))
                          if store.exists(path) else (0, 1))
        # cxenstored's record: a 24-byte header, 8 bytes a permission, the value,
        # the child names; it refuses one that reaches the quota.
        size = 24 + 8 * n_perms + value_size + names + (len(new_child) + 1 if new_child else 0)
        if self.over(conn, "node-size", size + 1):
            self.refuse(out, conn, f"node-size quota hit at {path}")
            raise ENOSPC(f"node {path} would be {size} bytes")

    def check_nodes(self, conn: Connection, view: View, path: str, levels: int,
                    out: Outbox) -> None:
        """Creating ``levels`` nodes down to ``path``: the nodes quota."""
        owned = self.state.store.owned.get(conn.domid, 0) + view.pending_usage(conn.domid)[0]
        if self.over(conn, "nodes", owned + levels):
            self.refuse(out, conn, f"nodes quota hit at {path}")
            raise ENOSPC(f"domain {conn.domid} owns too many nodes")

    def check_watch(self, conn: Connection, wpath: str, token: bytes, out: Outbox) -> None:
        """One more watch: the watches quota and the memory it holds."""
        if conn.privileged:
            return
        if self.over(conn, "watches", self.watches_of(conn.domid) + 1):
            self.refuse(out, conn, "watches quota hit")
            raise ENOSPC(f"domain {conn.domid} has too many watches")
        self.check_memory(conn, len(wpath) + len(token), out)

    def check_permissions(self, conn: Connection, count: int, out: Outbox) -> None:
        if self.over(conn, "permissions", count):
            self.refuse(out, conn, "permissions quota hit")
            raise ENOSPC(f"{count} permission entries")

    def open_transaction(self, conn: Connection, out: Outbox) -> None:
        """A transaction starts: the transactions quota, and its count."""
        if conn.privileged:
            return
        opened = self.state.open_by_domain
        limit = self.limit(conn.domid, "transactions")
        if limit and opened.get(conn.domid, 0) >= limit:
            self.refuse(out, conn, "transactions quota hit")
            raise ENOSPC(f"domain {conn.domid} has {limit} transactions open")
        opened[conn.domid] = opened.get(conn.domid, 0) + 1

    def close_transaction(self, conn: Connection) -> None:
        if conn.privileged:
            return
        opened = self.state.open_by_domain
        left = opened[conn.domid] - 1
        if left:
            opened[conn.domid] = left
        else:  # no entry kept for every domain that ever opened one
            del opened[conn.domid]

    def check_commit(self, conn: Connection, tx: Transaction, out: Outbox) -> None:
        """Refuse a commit that would take its domain over its nodes or memory quota.

        Each transaction was checked against what its domain owned when it wrote;
        several committed one after another must not add up past the quota
        (XSA-326: as many nodes as allowed in as many transactions as allowed).
        """
        if conn.privileged:
            return
        nodes, held = tx.pending_usage(conn.domid)
        owned = self.state.store.owned.get(conn.domid, 0)
        if nodes > 0 and self.over(conn, "nodes", owned + nodes):
            tx.close()
            self.refuse(out, conn, f"nodes quota hit committing transaction {tx.tx_id}")
            raise ENOSPC(f"domain {conn.domid} would own too many nodes")
        if held > 0:
            try:
                self.check_memory(conn, held, out)
            except ENOMEM:
                tx.close()
                raise
