"""Settings of the core that the daemon's flags change."""

from __future__ import annotations

from dataclasses import dataclass

from xenstore.protocol.ops import REL_PATH_MAX


@dataclass(slots=True)
class Config:
    """Limits and switches of one :class:`~xenstore.daemon.core.Server`."""

    #: The path-max quota (``-M``): bytes a path may have beyond a domain's home.
    path_max: int = REL_PATH_MAX
