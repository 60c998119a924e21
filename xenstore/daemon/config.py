"""Settings of the core that the daemon's flags change."""

from __future__ import annotations

from dataclasses import dataclass

from xenstore.protocol.ops import REL_PATH_MAX


@dataclass(slots=True)
class Config:
    """Limits and switches of one :class:`~xenstore.daemon.core.Server` (0: no limit)."""

    #: The path-max quota (``-M``): bytes a path may have beyond a domain's home.
    path_max: int = REL_PATH_MAX
    #: Open transactions per unprivileged domain (``-t``), as current cxenstored.
    transactions_max: int = 10
    #: Nodes one unprivileged transaction may touch (``-Q transaction-nodes=``).
    transaction_nodes_max: int = 1024
    #: Log every refused commit with its cause (they are kept for CONTROL anyway).
    log_conflicts: bool = True
