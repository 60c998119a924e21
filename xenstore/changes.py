"""What a change to the tree leaves behind for watches to fire on.

A transaction records its changes and hands them over at commit; outside a
transaction they fire at once. Each carries the permissions to judge who may
hear of it, taken when the change happened: a removed node's perms cannot be
read afterwards, and SET_PERMS is judged by the old perms as well as the new.
"""

from __future__ import annotations

from typing import NamedTuple

from xenstore.perms import Perms


class Change(NamedTuple):
    """A node changed (written, created, perms set) or was removed with its subtree."""

    path: str
    #: A watcher may hear of it if any of these lets it read (node, parent, old perms).
    perms: tuple[Perms, ...]
    #: For a removal: every node removed below ``path``, children before
    #: parents, each with the perms that decide who hears of it.
    removed: tuple[tuple[str, tuple[Perms, ...]], ...] = ()
