"""The whole server's invariants: what must hold between any two requests.

:meth:`Store.check <xenstore.store.Store.check>` covers the tree (parents and
children, generations, owner accounting, saved versions). This module adds what
lies around it: well-formed permissions, open snapshots that match the open
transactions, the per-domain transaction count the quota reads, and a
watch registry whose indexes agree and hold nothing of a connection that is
gone. CONTROL ``check`` and the fuzzers (``fuzz/``) call :func:`problems`.

Each check recounts from the primary data (the tree, the connections and their
transactions, the watches by connection) rather than trusting a counter, so a
bookkeeping slip shows up as a difference between the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from xenstore import perms
from xenstore.daemon.state import ServerState
from xenstore.perms import DOMID_FIRST_RESERVED, Perm

if TYPE_CHECKING:
    from xenstore.daemon.watches import WatchRegistry
    from xenstore.store import Store

class HasState(Protocol):
    """A :class:`~xenstore.daemon.core.Server`, as far as a check needs one."""

    state: ServerState


#: Problems reported per kind before the rest are summed up (a broken tree can
#: break every node, and a report of thousands of lines helps nobody).
SHOWN = 5


def problems(server: ServerState | HasState, previous_generation: int | None = None
             ) -> list[str]:
    """Every violated invariant of ``server``, in words (empty when sound).

    ``previous_generation`` is the store's generation at an earlier check:
    generations only ever increase, so a smaller one now is a problem.
    """
    if not isinstance(server, ServerState):  # a Server: check its state
        server = server.state
    checks: list[tuple[str, Callable[[], list[str]]]] = [
        ("the tree", server.store.check),
        ("perms", lambda: _perms_problems(server)),
        ("generations", lambda: _generation_problems(server.store, previous_generation)),
        ("transactions", lambda: _transaction_problems(server)),
        ("watches", lambda: _watch_problems(server.watches, server)),
        ("domains", lambda: _domain_problems(server)),
    ]
    found: list[str] = []
    for what, check in checks:
        try:
            found += check()
        except Exception as exc:  # damage bad enough to trip the check is a finding too
            found.append(f"checking {what} failed: {exc!r}")
    return found


def perms_problem(entries: object) -> str | None:
    """What is wrong with a permission list, or None: a non-empty tuple of
    :class:`Perm` with 32-bit domids and known access bits, owned (first entry)
    by a real domain, not a reserved id."""
    if not isinstance(entries, tuple) or not entries:
        return f"perms {entries!r} are not a non-empty tuple"
    for entry in entries:
        if not isinstance(entry, Perm) or not isinstance(entry.domid, int):
            return f"perms entry {entry!r} is not a Perm"
        if not 0 <= entry.domid <= 0xFFFFFFFF:
            return f"perms entry {entry!r} has a domid beyond 32 bits"
        if entry.access not in (perms.NONE, perms.READ, perms.WRITE, perms.BOTH):
            return f"perms entry {entry!r} has unknown access bits"
    if entries[0].domid >= DOMID_FIRST_RESERVED:
        return f"perms {entries!r} are owned by reserved domid {entries[0].domid}"
    return None


def _perms_problems(server: ServerState) -> list[str]:
    found = []
    # Nodes share interned perms tuples: judge each distinct object once.
    verdicts: dict[int, str | None] = {}
    for path, node in server.store.nodes.items():
        key = id(node.perms)
        if key not in verdicts:
            verdicts[key] = perms_problem(node.perms)
        if verdicts[key] is not None:
            found.append(f"{path}: {verdicts[key]}")
    for name, entries in server.special_perms.items():
        problem = perms_problem(entries)
        if problem is not None:
            found.append(f"{name}: {problem}")
    return _summed(found, "nodes with bad perms")


def _generation_problems(store: Store, previous: int | None) -> list[str]:
    """Generations only go forward (the saved versions are the store's own check)."""
    if previous is not None and store.generation < previous:
        return [f"generation went back from {previous} to {store.generation}"]
    return []


def _transaction_problems(server: ServerState) -> list[str]:
    """Open transactions are exactly the store's open snapshots, and the count
    the transactions quota reads is a recount of them."""
    store = server.store
    found = []
    snapshots: Counter[int] = Counter()
    by_domain: Counter[int] = Counter()
    for conn_id, conn in server.connections.items():
        if conn.conn_id != conn_id:
            found.append(f"connection {conn_id} is filed as {conn.conn_id}")
        for tx_id, tx in conn.transactions.items():
            if tx_id == 0 or tx.tx_id != tx_id:
                found.append(f"connection {conn_id}: transaction {tx.tx_id} filed as {tx_id}")
            if tx.snapshot > store.generation:
                found.append(f"connection {conn_id}: transaction {tx_id} reads the future")
            if tx.store is not store:
                found.append(f"connection {conn_id}: transaction {tx_id} on another store")
            snapshots[tx.snapshot] += 1
        if not conn.privileged and conn.transactions:
            by_domain[conn.domid] += len(conn.transactions)
    open_snapshots = Counter(store.snapshots())
    if open_snapshots != snapshots:
        found.append(
            f"open snapshots {sorted(open_snapshots.elements())} but open transactions "
            f"read at {sorted(snapshots.elements())}"
        )
    counted = {domid: n for domid, n in server.open_by_domain.items() if n}
    if counted != dict(by_domain):
        found.append(
            f"transactions per domain counted {counted} but open {dict(by_domain)}"
        )
    return found


def _watch_problems(registry: WatchRegistry, server: ServerState) -> list[str]:
    """The registry's three indexes agree, and none names a connection that is gone."""
    found = []
    live = server.connections
    gone = set(registry.by_conn) - set(live)
    if gone:
        found.append(f"watches of closed connections {sorted(gone)}")
    unprivileged = {c for c, conn in live.items() if not conn.privileged}
    if registry.unprivileged != unprivileged:
        found.append(
            f"unprivileged watchers {sorted(registry.unprivileged)} "
            f"but unprivileged connections {sorted(unprivileged)}"
        )
    registered: dict[int, object] = {}
    for conn_id, mine in registry.by_conn.items():
        for (wpath, token), watch in mine.items():
            if (watch.conn_id, watch.wpath, watch.token) != (conn_id, wpath, token):
                found.append(f"watch {watch!r} filed under {conn_id} {wpath!r} {token!r}")
            registered[id(watch)] = watch
    indexed: dict[int, object] = {}
    for wpath, on_path in registry.by_path.items():
        if not on_path:
            found.append(f"an empty watch list for {wpath}")
        if [(w.conn_id, w.seq) for w in on_path] != sorted((w.conn_id, w.seq) for w in on_path):
            found.append(f"watches on {wpath} out of event order")
        for watch in on_path:
            if watch.wpath != wpath:
                found.append(f"watch on {watch.wpath} listed under {wpath}")
            indexed[id(watch)] = watch
    if registered.keys() != indexed.keys():
        found.append(
            f"{len(registered)} watches by connection but {len(indexed)} by path"
        )
    absolute = sorted(w for w in registry.by_path if w.startswith("/"))
    if list(registry._index) != absolute:
        found.append(f"the subtree index holds {len(registry._index)} paths, not {len(absolute)}")
    return _summed(found, "watch problems")


def _domain_problems(server: ServerState) -> list[str]:
    found = []
    for domid, domain in server.domains.items():
        if domain.domid != domid or not 0 < domid < DOMID_FIRST_RESERVED:
            found.append(f"domain {domain.domid} filed as {domid}")
    for conn_id, conn in server.connections.items():
        of = server.domains.get(conn.domid)
        # A connection takes its domain's target when it connects and at SET_TARGET.
        if of is not None and not conn.privileged and conn.target != of.target:
            found.append(
                f"connection {conn_id} of domain {conn.domid} acts for {conn.target}, "
                f"its domain for {of.target}"
            )
    early = set(server.pending_features) & set(server.domains)
    if early:
        found.append(f"features pending for domains already introduced: {sorted(early)}")
    return found


def _summed(found: list[str], what: str) -> list[str]:
    if len(found) <= SHOWN:
        return found
    return [*found[:SHOWN], f"... and {len(found) - SHOWN} more {what}"]
