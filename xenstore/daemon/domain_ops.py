"""Domain management requests: INTRODUCE, RELEASE and friends, quotas and features.

A concern of the core (:class:`~xenstore.daemon.core.Server` composes it): it
works on the server's state and fires events through the watch operations.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from xenstore import paths, perms
from xenstore.daemon.domains import SUPPORTED_FEATURES, Domain, parse_domid, parse_number
from xenstore.daemon.effects import Close, DiscardOutput, Listen, Log, Outbox, Unlisten
from xenstore.errors import EBUSY, EINVAL, ENOENT
from xenstore.perms import DOMID_FIRST_RESERVED, Perm, intern
from xenstore.protocol.codec import split

if TYPE_CHECKING:
    from collections.abc import Callable

    from xenstore.daemon.state import Connection, ServerState
    from xenstore.daemon.tx_ops import TransactionOps
    from xenstore.daemon.watch_ops import WatchOps
    from xenstore.transactions import Transaction

OK = b"OK\0"

#: What IS_DOMAIN_INTRODUCED always answers T for, as cxenstored: the caller itself.
DOMID_SELF = 0x7FF0

#: INTRODUCE's gfn: signed decimal, as xenstore.txt has it (and then ignored, as 4.17 does).
_GFN = re.compile(rb"-?[0-9]{1,20}")


def decimal_domid(text: bytes) -> int:
    """A domid as a toolstack writes it (``%u``): decimal, below 2**32.

    0 and the reserved ids pass: each op decides what they mean. cxenstored's
    atoi() also reads ``abc`` (0), ``5x`` (5) and ``-1``; we answer EINVAL.
    """
    if not text.isdigit() or len(text) > 10 or int(text) > 0xFFFFFFFF:
        raise EINVAL(f"not a domid: {text!r}")
    return int(text)


class DomainOps:
    """The handlers of the domain-management ops (privileged callers only)."""

    def __init__(self, state: ServerState, watches: WatchOps, transactions: TransactionOps,
                 disconnect: Callable[[int], object]) -> None:
        self.state = state
        self.watch_ops = watches
        self.transactions = transactions
        self.disconnect = disconnect

    def introduce(self, conn: Connection, tx: Transaction | None, payload: bytes,
                  out: Outbox) -> bytes:
        # <domid>|<gfn>|<evtchn>|? : later fields (old xend sent a path) are ignored.
        fields = split(payload)
        if len(fields) < 3:
            raise EINVAL("INTRODUCE takes a domid, a gfn and an event channel")
        domid = decimal_domid(fields[0])
        if not _GFN.fullmatch(fields[1]):
            raise EINVAL(f"the gfn must be a signed decimal number: {fields[1]!r}")
        if not fields[2].isdigit() or len(fields[2]) > 10 or not 0 < int(fields[2]) < 1 << 32:
            raise EINVAL(f"the event channel must be a positive number: {fields[2]!r}")
        gfn, evtchn = int(fields[1]), int(fields[2])
        if domid == 0:
            # dom0 is introduced from the start; cxenstored would reset its ring,
            # which we do not have: the socket connections are not touched.
            return OK
        if domid >= DOMID_FIRST_RESERVED:
            raise EINVAL(f"not a guest domid: {domid}")
        known = self.state.domains.get(domid)
        if known is not None:
            # Introduced again (a resume, a reconnect): whatever the page, as
            # 4.17 ignores it, the channel is rebound and the domain's
            # connections are reset as cxenstored resets its ring. No events.
            known.gfn, known.evtchn = gfn, evtchn
            self._reset_connections(domid, out)
            return OK
        domain = Domain(domid, gfn, evtchn, features=self.state.pending_features.pop(domid, 0))
        self.state.domains[domid] = domain
        out.add(Listen(domid))
        out.extend(self.watch_ops.fire_special(paths.INTRODUCE_DOMAIN, domid))
        return OK

    def _reset_connections(self, domid: int, out: Outbox) -> None:
        """Drop the watches, transactions and unsent output of ``domid``'s connections.

        The connections stay: the guest goes on talking on them.
        """
        reset = 0
        for other in self.state.connections.values():
            if other.domid == domid:
                self.state.watches.remove_all(other.conn_id)
                self.transactions.abort_all(other)
                out.add(DiscardOutput(other.conn_id))
                reset += 1
        out.add(Log(f"domain {domid} introduced again: {reset} connection(s) "
                                 "reset", logging.INFO))

    def release(self, conn: Connection, tx: Transaction | None, payload: bytes,
                out: Outbox) -> bytes:
        domid = self._domain_arg(payload)
        # cxenstored answers first, then the clean-up's events and @releaseDomain.
        after = Outbox()
        self.end_domain(domid, "released", after)
        out.after_reply.extend(after.effects)
        return OK

    def _domain_arg(self, payload: bytes) -> int:
        """RELEASE's and RESUME's domid: EINVAL for 0 (as cxenstored), ENOENT if not
        introduced (reserved ids too: they never are)."""
        fields = split(payload)
        if len(fields) != 1:
            raise EINVAL("expected one domid")
        domid = decimal_domid(fields[0])
        if domid == 0:
            raise EINVAL("domain 0 cannot be released or resumed")
        if domid not in self.state.domains:
            raise ENOENT(f"domain {domid} is not introduced")
        return domid

    def end_domain(self, domid: int, why: str, out: Outbox) -> None:
        """End a domain: close its connections, clean up after it, fire @releaseDomain.

        Its connections go first (with their watches and transactions); then
        the nodes it owns are removed (with watch events), or handed to dom0
        with ``keep_orphans``; its entries in other nodes' ACLs are dropped, as
        current cxenstored revokes a dead domain's rights; then @releaseDomain.
        """
        out.add(Log(f"domain {domid} {why}"))
        del self.state.domains[domid]
        for conn in self.state.domain_connections(domid):
            out.add(Close(conn.conn_id, f"domain {domid} {why}"))
            self.disconnect(conn.conn_id)
        out.add(Unlisten(domid))
        self._clean_up_after(domid, out)
        out.extend(self.watch_ops.fire_special(paths.RELEASE_DOMAIN, domid))

    def _clean_up_after(self, domid: int, out: Outbox) -> None:
        store = self.state.store
        owned_tops = []
        rewrite = []
        for path, node in store.nodes.items():
            if node.perms[0].domid == domid:
                if path == paths.ROOT:
                    # dom0 may give the root away, but the root cannot go: it is
                    # handed back to dom0 (as with keep_orphans), and the
                    # domain's nodes below it are removed as tops of their own.
                    rewrite.append(path)
                    continue
                above_path = paths.parent(path)
                if above_path == paths.ROOT or store.nodes[above_path].perms[0].domid != domid:
                    owned_tops.append(path)
            elif any(p.domid == domid for p in node.perms[1:]):
                rewrite.append(path)
        for path in rewrite:
            store.set_perms(path, revoked(store.nodes[path].perms, domid))
        for path in owned_tops:
            if path not in store.nodes:
                continue  # went with an earlier subtree
            if self.state.config.keep_orphans:
                for below in list(store.walk(path)):
                    node = store.nodes[below]
                    if node.perms[0].domid == domid:
                        store.set_perms(below, revoked(node.perms, domid))
            else:
                watched = bool(self.state.watches.watched_below(path))
                self.watch_ops.fire(store.remove(path, watched), out)

    def is_domain_introduced(self, conn: Connection, tx: Transaction | None, payload: bytes,
                             out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) != 1:
            raise EINVAL("expected one domid")
        domid = decimal_domid(fields[0])
        return b"T\0" if domid in (0, DOMID_SELF) or domid in self.state.domains else b"F\0"

    def resume(self, conn: Connection, tx: Transaction | None, payload: bytes,
               out: Outbox) -> bytes:
        self.state.domains[self._domain_arg(payload)].shutdown = False
        return OK

    def set_target(self, conn: Connection, tx: Transaction | None, payload: bytes,
                   out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) != 2:
            raise EINVAL("SET_TARGET takes a domid and a target domid")
        domid, target = decimal_domid(fields[0]), decimal_domid(fields[1])
        for each in (domid, target):
            if each != 0 and each not in self.state.domains:  # dom0 is always introduced
                raise ENOENT(f"domain {each} is not introduced")
        if domid == 0:
            return OK  # dom0's connections have every right already
        # A target of 0 gives the domain dom0's rights over dom0's nodes, as in cxenstored.
        self.state.domains[domid].target = target
        for other in self.state.connections.values():
            if other.domid == domid:
                other.target = target
        return OK

    def get_feature(self, conn: Connection, tx: Transaction | None, payload: bytes,
                    out: Outbox) -> bytes:
        fields = [f for f in split(payload) if f]
        if not fields:
            return b"%d\0" % SUPPORTED_FEATURES
        if len(fields) != 1:
            raise EINVAL("GET_FEATURE takes an optional domid")
        domid = parse_domid(fields[0])
        domain = self.state.domains.get(domid)
        if domain is not None:
            return b"%d\0" % domain.features
        if domid in self.state.pending_features:
            return b"%d\0" % self.state.pending_features[domid]
        raise ENOENT(f"domain {domid} is not known")

    def set_feature(self, conn: Connection, tx: Transaction | None, payload: bytes,
                    out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) != 2:
            raise EINVAL("SET_FEATURE takes a domid and a value")
        domid, value = parse_domid(fields[0]), parse_number(fields[1])
        if value & ~SUPPORTED_FEATURES:
            raise EINVAL(f"unsupported feature bits {value:#x}")
        if domid in self.state.domains:
            raise EBUSY(f"domain {domid} is already introduced")
        self.state.pending_features[domid] = value
        return OK

    def get_quota(self, conn: Connection, tx: Transaction | None, payload: bytes,
                  out: Outbox) -> bytes:
        fields = [f for f in split(payload) if f]
        if not fields:
            return " ".join(self.state.config.quotas).encode() + b"\0"
        if len(fields) > 2:
            raise EINVAL("GET_QUOTA takes [[domid] name]")
        name = self._quota_name(fields[-1])
        if len(fields) == 1:
            return b"%d\0" % self.state.config.quotas[name]
        domain = self._introduced(fields[0])
        return b"%d\0" % domain.quotas.get(name, self.state.config.quotas[name])

    def set_quota(self, conn: Connection, tx: Transaction | None, payload: bytes,
                  out: Outbox) -> bytes:
        fields = split(payload)
        if len(fields) not in (2, 3):
            raise EINVAL("SET_QUOTA takes [domid] name value")
        name, value = self._quota_name(fields[-2]), parse_number(fields[-1])
        if len(fields) == 2:
            self.state.config.quotas[name] = value
        else:
            self._introduced(fields[0]).quotas[name] = value
        return OK

    def _quota_name(self, raw: bytes) -> str:
        name = raw.decode("latin-1")
        if name not in self.state.config.quotas:
            raise EINVAL(f"no quota named {name!r}")
        return name

    def _introduced(self, raw: bytes) -> Domain:
        domain = self.state.domains.get(parse_domid(raw))
        if domain is None:
            raise ENOENT(f"domain {raw!r} is not introduced")
        return domain

    def domain_died(self, domid: int, dead: bool, out: Outbox) -> None:
        """Simulate what Xen would tell: the domain shut down, or died.

        A shutdown fires @releaseDomain once (RESUME re-arms it); a death
        releases the domain as RELEASE does.
        """
        domain = self.state.domains.get(domid)
        if domain is None:
            raise ENOENT(f"domain {domid} is not introduced")
        if dead:
            self.end_domain(domid, "died", out)
        elif not domain.shutdown:
            domain.shutdown = True
            out.add(Log(f"domain {domid} shut down"))
            out.extend(self.watch_ops.fire_special(paths.RELEASE_DOMAIN, domid))


def revoked(old: perms.Perms, domid: int) -> perms.Perms:
    """``old`` without the rights of a released ``domid``: its ACL entries are
    dropped and, if it was the owner, dom0 owns the node instead (same default)."""
    owner = old[0] if old[0].domid != domid else Perm(0, old[0].access)
    return intern((owner, *(p for p in old[1:] if p.domid != domid)))

