"""Settings of the core that the daemon's flags change."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Config:
    """Limits and switches of one :class:`~xenstore.daemon.core.Server`.

    ``quotas`` are the global quotas by their wire names (``nodes``,
    ``watches``, ``transactions``, ``node-size``, ``permissions``,
    ``path-max``, ``transaction-nodes``, ``memory``, ``outstanding``): the
    defaults of every domain; 0 disables one. Those not given take
    :data:`xenstore.daemon.quotas.DEFAULTS` when the server is made.
    Privileged connections are exempt from all but ``path-max``, which
    cxenstored 4.17 applies to dom0 too.
    """

    quotas: dict[str, int] = field(default_factory=dict)
    #: Log every refused commit with its cause (they are kept for CONTROL anyway).
    log_conflicts: bool = True
    #: At RELEASE, hand a domain's nodes to dom0 instead of removing them (``-K``).
    keep_orphans: bool = False
    #: Where CONTROL log on traces to (``-T``, or CONTROL logfile).
    trace_file: str | None = None
    #: Accept CONTROL fault, which makes requests fail on purpose (``--faults``: tests only).
    faults: bool = False
