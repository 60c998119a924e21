"""The live page's copy of the store, kept right from the daemon's monitor feed: pure.

The daemon's monitor (``pyxenstored --monitor``) says, for each request that
changed something, which path it named. From a line this module decides what to
read again (:func:`affected`): a written node (with any ancestors the write
created), a removed subtree, everything when the line cannot say (a RELEASE
may remove a domain's nodes; lines were dropped; a commit's list was cut).
Reading the store is the caller's (trio) part; :class:`StoreView` takes what
was read and returns the :class:`Delta` for the page. Re-reading rather than
replaying keeps the copy right whatever the order of the reads: every change
is followed by a read of what it touched, so the last read wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: XenbusState (xen/include/public/io/xenbus.h), for the page's labels.
XENBUS_STATES = {
    0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised", 4: "Connected",
    5: "Closing", 6: "Closed", 7: "Reconfiguring", 8: "Reconfigured",
}
DOMAINS = "/local/domain"


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as dom0 reads it: value (text) and permissions (``n0 r3``...)."""

    path: str
    value: str
    perms: tuple[str, ...]

    @property
    def owner(self) -> int | None:
        first = self.perms[0] if self.perms else ""
        return int(first[1:]) if first[1:].isdigit() else None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "value": self.value, "perms": list(self.perms),
                "owner": self.owner}


@dataclass(slots=True)
class Delta:
    """What the page must change: nodes to show (new, or read again) and paths gone."""

    changed: dict[str, NodeView] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)

    def as_json(self) -> dict[str, Any]:
        return {"set": [node.as_json() for node in self.changed.values()],
                "removed": sorted(self.removed, key=lambda p: (-p.count("/"), p))}


def parent(path: str) -> str:
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def below(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or inside its subtree."""
    return path == top or top == "/" or path.startswith(top + "/")


@dataclass(frozen=True, slots=True)
class Affected:
    """What one monitor line asks to be read again."""

    reread: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    everything: bool = False


NOTHING = Affected()


def _one(op: str, path: object) -> Affected:
    if not isinstance(path, str) or not path.startswith("/"):
        return NOTHING  # a special @ path, or none
    if op in ("WRITE", "MKDIR", "SET_PERMS"):
        return Affected(reread=(path,))
    if op == "RM":
        return Affected(gone=(path,))
    return NOTHING


def affected(line: Mapping[str, Any]) -> Affected:
    """What to read again after the monitor line ``line``."""
    if line.get("dropped"):
        return Affected(everything=True)  # lines were lost: nobody knows what changed
    if line.get("reply") != "OK":
        return NOTHING
    op = line.get("op")
    if op in ("WRITE", "MKDIR", "RM", "SET_PERMS"):
        return NOTHING if line.get("tx") else _one(op, line.get("path"))
    if op == "TRANSACTION_END":
        if line.get("changes_omitted"):
            return Affected(everything=True)
        reread: list[str] = []
        gone: list[str] = []
        for change in line.get("changes", ()):
            one = _one(change.get("op", ""), change.get("path"))
            reread += one.reread
            gone += one.gone
        return Affected(tuple(reread), tuple(gone))
    if op == "RELEASE":
        return Affected(everything=True)  # the daemon removes what the domain owned
    return NOTHING


class StoreView:
    """The page's copy of the tree: path -> :class:`NodeView`, parents before children."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeView] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.nodes

    def topmost_missing(self, path: str) -> str:
        """The highest ancestor of ``path`` (or itself) this copy does not have: a write
        creates missing ancestors, and those must be read too."""
        top = path
        while top != "/" and parent(top) not in self.nodes:
            top = parent(top)
        return top

    def remove(self, top: str, delta: Delta) -> None:
        """Forget ``top`` and its subtree."""
        gone = [path for path in self.nodes if below(path, top)]
        for path in gone:
            del self.nodes[path]
            delta.changed.pop(path, None)
            delta.removed.add(path)

    def put(self, nodes: Iterable[NodeView], delta: Delta) -> None:
        """Take nodes just read (parents before children)."""
        for node in nodes:
            self.nodes[node.path] = node
            delta.changed[node.path] = node
            delta.removed.discard(node.path)

    def replace(self, top: str, nodes: list[NodeView], delta: Delta) -> None:
        """``top``'s whole subtree as just read (empty: it is gone): nodes that are not
        there any more go."""
        there = {node.path for node in nodes}
        stale = [path for path in self.nodes if below(path, top) and path not in there]
        for path in stale:
            del self.nodes[path]
            delta.changed.pop(path, None)
            delta.removed.add(path)
        changed = [node for node in nodes if self.nodes.get(node.path) != node]
        self.put(changed, delta)

    def snapshot(self) -> list[dict[str, Any]]:
        return [node.as_json() for node in self.nodes.values()]

    def value(self, path: str) -> str | None:
        node = self.nodes.get(path)
        return None if node is None else node.value

    def children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return [p[len(prefix):] for p in self.nodes
                if p.startswith(prefix) and "/" not in p[len(prefix):]]


def domains_in(view: StoreView) -> list[dict[str, Any]]:
    """The domains the store names (``/local/domain/<id>/name``), all ``running``: what a
    page shows when nobody tells it more (a simulated hypervisor does)."""
    found: list[dict[str, Any]] = []
    for child in view.children(DOMAINS):
        if not child.isdigit():
            continue
        home = f"{DOMAINS}/{child}"
        name = view.value(f"{home}/name")
        if name is None:
            continue
        target = view.value(f"{home}/memory/target") or ""
        cpus = [view.value(f"{home}/cpu/{n}/availability") for n in view.children(f"{home}/cpu")]
        found.append({
            "domid": int(child), "name": name, "state": "running",
            "memory": int(target) if target.isdigit() else None,
            "vcpus": sum(1 for c in cpus if c == "online") or None,
        })
    return sorted(found, key=lambda d: int(d["domid"]))
