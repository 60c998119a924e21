"""The server's state, in one place: what every concern of the core reads and changes.

The concerns (:mod:`.access`, :mod:`.quotas`, :mod:`.nodes`, :mod:`.watch_ops`,
:mod:`.tx_ops`, :mod:`.domain_ops`, :mod:`.control`) hold this object, never each
other's private fields, and :class:`~xenstore.daemon.core.Server` composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xenstore import paths, perms
from xenstore.daemon.config import Config
from xenstore.daemon.domains import Domain
from xenstore.daemon.faults import Faults
from xenstore.daemon.watches import WatchRegistry
from xenstore.perms import Perm
from xenstore.store import Store
from xenstore.transactions import Transaction


@dataclass(slots=True, eq=False)
class Connection:
    """One client of the core: a dom0 socket's, or a guest's (unprivileged)."""

    conn_id: int
    domid: int = 0
    privileged: bool = True
    #: The domain this one acts for after SET_TARGET (its rights become ours).
    target: int | None = None
    transactions: dict[int, Transaction] = field(default_factory=dict)
    next_tx_id: int = 1


def readable_by_all(domid: int = 0) -> perms.Perms:
    """``r<domid>``: owned by ``domid``, readable by every domain."""
    return perms.intern((Perm(domid, perms.READ),))


class ServerState:
    """Everything a XenStore daemon holds between two requests."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store()
        self.connections: dict[int, Connection] = {}
        self.domains: dict[int, Domain] = {}
        self.watches = WatchRegistry()
        #: Perms of @introduceDomain and @releaseDomain: they decide who gets those
        #: events. @releaseDomain is readable by every domain, as in current cxenstored.
        self.special_perms: dict[str, perms.Perms] = {
            paths.INTRODUCE_DOMAIN: perms.owner_only(0),
            paths.RELEASE_DOMAIN: readable_by_all(0),
        }
        #: SET_FEATURE values of domains not introduced yet.
        self.pending_features: dict[int, int] = {}
        #: Open transactions per unprivileged domain (the transactions quota).
        self.open_by_domain: dict[int, int] = {}
        #: Failures injected on purpose for tests (CONTROL fault, with ``--faults``).
        self.faults = Faults(enabled=config.faults)
        #: More lines for CONTROL memreport, from whoever runs this core (the shell's
        #: tasks and sockets): injected, so that the core itself stays free of I/O.
        self.reporters: list[Callable[[], list[str]]] = []
        self.next_conn_id = 1

    def domain_connections(self, domid: int) -> list[Connection]:
        return [c for c in self.connections.values() if c.domid == domid]
