"""Old versions of nodes, kept while an open snapshot may still read them.

A transaction reads the tree as it was at its start, without copying anything
when it starts: it opens a snapshot, which is only the store's generation then.
While a snapshot is open, the first change to a node after the newest open
snapshot saves the node's previous version (or "missing"); reading at snapshot S
takes the oldest saved version newer than S, else the current node. Saved
versions are dropped once no open snapshot is older than them, so with no
transaction open nothing is kept but the current tree.
"""

from __future__ import annotations

import bisect
import sys
from collections import deque

from xenstore.perms import Perms
from xenstore.store.node import Node, child_names, children_of

#: A saved version as plain data: value, perms, (vgen, pgen, cgen), children's names;
#: None where there was no node.
Plain = tuple[bytes, Perms, tuple[int, int, int], list[str]] | None

#: Problems reported per kind before the rest are summed up.
SHOWN = 5

#: What the children of a version put back by :meth:`Versions.keep` map to: a saved
#: version's children are only ever read for their names.
_LISTED = Node(b"", (), 0)


class Versions:
    """The open snapshots, and the saved versions they need (read by :meth:`Store.at`)."""

    def __init__(self) -> None:
        #: path -> [(generation of a change, the version before it or None)], oldest first.
        self.history: dict[str, list[tuple[int, Node | None]]] = {}
        #: Every saved version as (generation, path), oldest first: what to prune next.
        self.order: deque[tuple[int, str]] = deque()
        #: Generations of the open snapshots (a multiset), oldest first. A plain list:
        #: snapshots open at the store's generation, which only grows, so each is
        #: appended at the end (bisect finds the place of one a live update restores);
        #: cheaper than a SortedList for the few that are open at once.
        self.snapshots: list[int] = []

    def open(self, generation: int) -> int:
        snapshots = self.snapshots
        if not snapshots or snapshots[-1] <= generation:
            snapshots.append(generation)
        else:
            bisect.insort(snapshots, generation)
        return generation

    def close(self, snapshot: int, generation: int) -> None:
        snapshots = self.snapshots
        at = bisect.bisect_left(snapshots, snapshot)
        if at == len(snapshots) or snapshots[at] != snapshot:
            raise ValueError(f"no snapshot open at {snapshot}")
        del snapshots[at]
        self.prune(generation)

    def save(self, path: str, node: Node | None, gen: int, copy: bool = True) -> None:
        """Keep the version of ``path`` before change ``gen`` if a snapshot needs it.

        ``copy=False`` when the node is about to leave the tree for good.
        """
        snapshots = self.snapshots
        if not snapshots:
            return
        versions = self.history.get(path)
        if versions is not None and versions[-1][0] > snapshots[-1]:
            return  # changed since the newest snapshot: every snapshot is covered
        saved = node.copy() if node is not None and copy else node
        if versions is None:
            self.history[path] = [(gen, saved)]
        else:
            versions.append((gen, saved))
        self.order.append((gen, path))

    def prune(self, generation: int) -> None:
        """Drop the versions no open snapshot reads (``generation``: the store's now)."""
        oldest = self.snapshots[0] if self.snapshots else generation
        order = self.order
        history = self.history
        while order and order[0][0] <= oldest:
            _, path = order.popleft()
            versions = history[path]
            del versions[0]
            if not versions:
                del history[path]

    def export(self) -> list[tuple[int, str, Plain]]:
        """Every saved version as ``(generation of the change, path, version)``, in the
        order they were saved (a live update carries them, :meth:`keep` puts them back)."""
        position: dict[str, int] = {}
        out: list[tuple[int, str, Plain]] = []
        for gen, path in self.order:
            index = position.get(path, 0)
            position[path] = index + 1
            old = self.history[path][index][1]
            out.append((gen, path, None if old is None else (
                old.value, old.perms, (old.vgen, old.pgen, old.cgen),
                child_names(path, old.children))))
        return out

    def keep(self, path: str, gen: int, version: Plain) -> None:
        """Put back a version :meth:`export` gave (in its order; :meth:`problems` says
        whether the result is sound)."""
        node = None
        if version is not None:
            value, perms, (vgen, pgen, cgen), names = version
            node = Node(value, perms, vgen,
                        children_of((sys.intern(name), _LISTED) for name in names))
            node.pgen, node.cgen = pgen, cgen
        self.history.setdefault(path, []).append((gen, node))
        self.order.append((gen, path))

    @property
    def saved(self) -> int:
        """How many versions are kept."""
        return len(self.order)

    def problems(self, generation: int) -> list[str]:
        """What is unsound: versions out of order or from the future, a pruning queue
        that does not name exactly the saved versions, versions with no snapshot open."""
        found = []
        saved = 0
        for path, versions in self.history.items():
            gens = [gen for gen, _ in versions]
            saved += len(gens)
            if not versions:
                found.append(f"{path}: an empty list of saved versions")
            elif gens != sorted(set(gens)) or gens[-1] > generation:
                found.append(f"{path}: saved versions at generations {gens} out of order")
        if len(found) > SHOWN:
            found[SHOWN:] = [f"... and {len(found) - SHOWN} more paths with bad saved versions"]
        if saved != len(self.order):
            found.append(f"{saved} saved versions but {len(self.order)} queued to prune")
        if not self.snapshots and self.history:
            found.append(f"{len(self.history)} paths keep versions with no snapshot open")
        return found

    def repair(self, generation: int) -> list[str]:
        """Make the versions sound again (see :meth:`problems`); what was done."""
        if not self.problems(generation):
            return []
        if not self.snapshots:
            self.history.clear()
            self.order.clear()
            return ["versions kept with no snapshot open; dropped"]
        for path, versions in list(self.history.items()):
            kept: dict[int, Node | None] = {}
            for gen, old in sorted(versions, key=lambda saved: saved[0]):
                if gen <= generation:
                    kept.setdefault(gen, old)
            if kept:
                self.history[path] = list(kept.items())
            else:
                del self.history[path]
        self.order = deque(sorted(
            (gen, path) for path, versions in self.history.items() for gen, _ in versions
        ))
        return ["saved versions out of order or unqueued; sorted and queued again"]
