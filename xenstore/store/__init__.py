"""The store: the committed tree (:class:`Store`), the old versions open snapshots
still need (:mod:`~xenstore.store.versions`), and one node (:mod:`~xenstore.store.node`).

``tree`` holds the store and the :class:`View` protocol the core reads and
changes through; ``node`` the node, its byte count (:func:`node_bytes`) and the
helpers reckoned from one; ``versions`` the snapshots. Import from here.
"""

from xenstore.store.node import Node, child_names, inherited_perms, node_bytes, postorder
from xenstore.store.tree import Edit, Store, View

__all__ = [
    "Edit",
    "Node",
    "Store",
    "View",
    "child_names",
    "inherited_perms",
    "node_bytes",
    "postorder",
]
