"""Why a commit was refused: what the transaction read, and the commit that moved it.

A refused commit raises :class:`TransactionConflict`, an :class:`~xenstore.errors.EAGAIN`
(so ``except EAGAIN`` still catches it, and the wire still says ``EAGAIN``) that
carries the :class:`Conflict` list the daemon explains in its log and in CONTROL
``conflicts``.
"""

from __future__ import annotations

from typing import NamedTuple

from xenstore.errors import EAGAIN

#: What a read consulted: a node's existence (or absence), value, perms or child list.
EXISTS, VALUE, PERMS, CHILDREN = "existence", "value", "perms", "children"


class Conflict(NamedTuple):
    """One thing a transaction read that a later commit changed."""

    path: str
    #: :data:`EXISTS`, :data:`VALUE`, :data:`PERMS` or :data:`CHILDREN`.
    aspect: str
    #: The generation of the commit that changed it (0 when the node is gone).
    changed_by: int


class TransactionConflict(EAGAIN):
    """A commit refused because something the transaction read has changed since."""

    def __init__(self, tx_id: int, conflicts: list[Conflict]) -> None:
        first = conflicts[0]
        super().__init__(
            f"transaction {tx_id}: the {first.aspect} of {first.path} it read "
            f"was changed by commit {first.changed_by}"
        )
        self.tx_id = tx_id
        #: Every conflict found, in the order the transaction first read each.
        self.conflicts = conflicts
