"""A fresh :class:`~xenstore.daemon.core.Server` from a migration stream (a snapshot)."""

from __future__ import annotations

from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.migration.snapshot import Loaded, load
from xenstore.migration.stream import read_located


def server_from(data: bytes, config: Config | None = None) -> tuple[Server, Loaded]:
    """A server holding the stream's tree, special perms and domains; its connections
    and their watches are dropped. :class:`~.records.StreamError` names the record and
    the offset of anything wrong; no server is returned then."""
    server = Server(config)
    loaded = load(read_located(data), server.state)
    return server, loaded


def describe(loaded: Loaded) -> str:
    """One line for the log: what the restore kept and what it dropped."""
    return (f"restored {len(loaded.domains)} domain(s); dropped "
            f"{loaded.dropped_connections} connection(s) with {loaded.dropped_watches} "
            f"watch(es); skipped {loaded.skipped} record(s)")
