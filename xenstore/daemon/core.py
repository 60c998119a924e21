"""The pure core: ``Server.handle(conn_id, packet)`` returns the effects to carry out.

No trio, no sockets, no clocks: one request runs to completion without ever
waiting, which makes each request atomic and every behaviour testable with
plain function calls. The shell (:mod:`xenstore.daemon.shell`) feeds packets
in and carries the returned :mod:`effects <xenstore.daemon.effects>` out.

Every request goes through :meth:`Server.handle`, which is also the one place
that turns a :class:`~xenstore.errors.XenStoreError` into an ERROR reply.
Handlers read and change the tree through a :class:`~xenstore.store.View`:
the store itself, or the caller's transaction, which records what it read.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from xenstore import errors, paths, perms
from xenstore.changes import Change
from xenstore.daemon.config import Config
from xenstore.daemon.control import ControlOps
from xenstore.daemon.domain_ops import DomainOps, readable_by_all
from xenstore.daemon.domains import Domain
from xenstore.daemon.effects import Effect, Log, Send
from xenstore.daemon.faults import Faults
from xenstore.daemon.quotas import QuotaChecks
from xenstore.daemon.watches import WatchRegistry
from xenstore.errors import (
    E2BIG,
    EACCES,
    EBUSY,
    EINVAL,
    ENOENT,
    ENOSPC,
    ENOSYS,
    XenStoreError,
)
from xenstore.protocol.codec import Packet, describe, join, split
from xenstore.protocol.ops import PAYLOAD_MAX, Op
from xenstore.store import Store, View
from xenstore.transactions import Transaction

OK = b"OK\0"

#: How many recent commits the conflict explainer can name.
COMMITS_REMEMBERED = 4096


@dataclass(slots=True, eq=False)
class Connection:
    """One client: a dom0 socket or (later) a guest's socket."""

    conn_id: int
    domid: int = 0
    privileged: bool = True
    #: The domain this one acts for after SET_TARGET (its rights become ours).
    target: int | None = None
    transactions: dict[int, Transaction] = field(default_factory=dict)
    next_tx_id: int = 1


Handler = Callable[[Connection, "Transaction | None", bytes], bytes]


def one_arg(payload: bytes) -> str:
    """The single NUL-terminated argument of a request, as cxenstored's onearg()."""
    if not payload.endswith(b"\0") or payload.find(b"\0") != len(payload) - 1:
        raise EINVAL("expected exactly one argument")
    # latin-1 never fails; the path grammar then rejects anything not ASCII.
    return payload[:-1].decode("latin-1")


def atoi(text: str) -> int:
    """C's atoi(), then reinterpreted as unsigned 32 bits, as cxenstored prints domids."""
    text = text.lstrip(" \t\n\v\f\r")
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-":
        text = text[1:]
    digits = len(text) - len(text.lstrip("0123456789"))
    value = int(text[:digits]) if digits else 0
    return (sign * value) & 0xFFFFFFFF


#: Ops only privileged callers may use (cxenstored's XS_FLAG_PRIV).
PRIVILEGED_OPS = frozenset(
    (Op.CONTROL, Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED, Op.RESUME, Op.SET_TARGET,
     Op.GET_FEATURE, Op.SET_FEATURE, Op.GET_QUOTA, Op.SET_QUOTA)
)


class Server(DomainOps, ControlOps, QuotaChecks):
    """The whole state of a XenStore daemon, and the request handlers."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.store = Store()
        self.connections: dict[int, Connection] = {}
        #: Perms of @introduceDomain and @releaseDomain: they decide who gets those
        #: events. @releaseDomain is readable by every domain, as in current cxenstored.
        self.special_perms: dict[str, perms.Perms] = {
            paths.INTRODUCE_DOMAIN: perms.owner_only(0),
            paths.RELEASE_DOMAIN: readable_by_all(0),
        }
        self.domains: dict[int, Domain] = {}
        #: The memory quota's warning level (CONTROL quota-soft), in bytes.
        self.soft_memory = self.config.quotas["memory"] * 4 // 5
        #: SET_FEATURE values of domains not introduced yet.
        self.pending_features: dict[int, int] = {}
        self.watches = WatchRegistry()
        #: More lines for CONTROL memreport, from whoever runs this core (the shell's
        #: tasks and sockets): injected, so that the core itself stays free of I/O.
        self.reporters: list[Callable[[], list[str]]] = []
        #: Open transactions per unprivileged domain (the transactions quota).
        self._open_by_domain: dict[int, int] = {}
        #: The latest commits, for the conflict explainer: a ring indexed by
        #: generation, holding (generation, conn_id, domid, op, tx_id, first argument).
        self._commits: list[tuple[int, int, int, int, int, bytes] | None] = (
            [None] * COMMITS_REMEMBERED
        )
        #: The latest refused commits, explained (CONTROL conflicts).
        self.conflicts: deque[str] = deque(maxlen=100)
        #: Failures injected on purpose for tests (CONTROL fault, with ``--faults``).
        self.faults = Faults(enabled=self.config.faults)
        self._next_conn_id = 1
        #: Effects of the request being handled: watch events, then the reply.
        self._effects: list[Effect] = []
        #: Effects that must follow the reply (WATCH's first event).
        self._after_reply: list[Effect] = []
        self._dispatch: dict[int, Handler] = {
            Op.CONTROL: self._do_control,
            Op.DIRECTORY: self._do_directory,
            Op.READ: self._do_read,
            Op.GET_PERMS: self._do_get_perms,
            Op.WATCH: self._do_watch,
            Op.UNWATCH: self._do_unwatch,
            Op.TRANSACTION_START: self._do_transaction_start,
            Op.TRANSACTION_END: self._do_transaction_end,
            Op.GET_DOMAIN_PATH: self._do_get_domain_path,
            Op.WRITE: self._do_write,
            Op.MKDIR: self._do_mkdir,
            Op.RM: self._do_rm,
            Op.SET_PERMS: self._do_set_perms,
            Op.RESET_WATCHES: self._do_reset_watches,
            Op.DIRECTORY_PART: self._do_directory_part,
            Op.INTRODUCE: self._do_introduce,
            Op.RELEASE: self._do_release,
            Op.IS_DOMAIN_INTRODUCED: self._do_is_domain_introduced,
            Op.RESUME: self._do_resume,
            Op.SET_TARGET: self._do_set_target,
            Op.GET_FEATURE: self._do_get_feature,
            Op.SET_FEATURE: self._do_set_feature,
            Op.GET_QUOTA: self._do_get_quota,
            Op.SET_QUOTA: self._do_set_quota,
        }
        # Ops whose header tx_id is not looked up (cxenstored's XS_FLAG_NOTID).
        self._no_tx_lookup: frozenset[int] = frozenset((Op.WATCH, Op.UNWATCH))

    # -- connections ----------------------------------------------------------

    def connect(self, domid: int = 0, privileged: bool = True) -> int:
        """Register a new connection; returns its id."""
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        domain = self.domains.get(domid)
        target = domain.target if domain is not None else None
        self.connections[conn_id] = Connection(conn_id, domid, privileged, target)
        if not privileged:
            self.watches.unprivileged.add(conn_id)
        return conn_id

    def disconnect(self, conn_id: int) -> list[Effect]:
        """Forget a connection: its transactions are aborted, its watches dropped."""
        conn = self.connections.pop(conn_id, None)
        if conn is not None:
            self._abort_all(conn)
        self.watches.remove_all(conn_id)
        self.watches.unprivileged.discard(conn_id)
        return []

    # -- requests -------------------------------------------------------------

    def handle(self, conn_id: int, packet: Packet) -> list[Effect]:
        """Answer one request; returns the effects in the order they must happen."""
        conn = self.connections[conn_id]
        op, req_id, tx_id, payload = packet
        effects: list[Effect] = []
        self._effects = effects
        self._after_reply = []
        before = self.store.generation
        try:
            handler = self._dispatch.get(op)
            if handler is None:
                raise ENOSYS(f"op {op}")
            if op in PRIVILEGED_OPS and not conn.privileged:
                raise EACCES(f"{Op(op).name} is for privileged domains only")
            tx = None
            if tx_id and op not in self._no_tx_lookup:
                tx = conn.transactions.get(tx_id)
                if tx is None:
                    raise ENOENT(f"no transaction {tx_id}")
            reply = handler(conn, tx, payload)
        except XenStoreError as exc:
            reply = exc.name.encode() + b"\0"
            op = Op.ERROR
        except Exception as exc:  # a bug must cost one request, not the daemon
            guest = None if conn.privileged else conn.domid
            effects.append(Log(f"internal error on {describe(packet)} from connection "
                               f"{conn_id}: {exc!r}", domid=guest))
            # The change it interrupted may be half done: the tree must stay sound.
            effects.extend(Log(f"repaired after the internal error: {line}", logging.ERROR)
                           for line in self.store.repair())
            reply = b"EIO\0"
            op = Op.ERROR
        if len(reply) > PAYLOAD_MAX:  # a handler's bug: never put it on the wire
            effects.append(Log(f"internal error on {describe(packet)} from connection "
                               f"{conn_id}: a reply of {len(reply)} bytes, over "
                               f"{PAYLOAD_MAX}; answered E2BIG",
                               domid=None if conn.privileged else conn.domid))
            reply = b"E2BIG\0"
            op = Op.ERROR
        if self.store.generation != before:
            self._remember_commit(conn, packet)
        effects.append(Send(conn_id, Packet(op, req_id, tx_id, reply)))
        if self._after_reply:
            effects.extend(self._after_reply)
        return effects

    # -- lookups with cxenstored's permission rules ---------------------------

    def _path(self, conn: Connection, path: str) -> str:
        return paths.canonical(path, conn.domid, self._quota(conn, "path-max"))

    def _may(self, conn: Connection, view: View, path: str, need: int) -> bool:
        if conn.privileged:
            return True
        have = perms.access_for(view.perms(path), conn.domid, conn.target)
        return need & have == need

    def _check(self, conn: Connection, view: View, path: str, need: int) -> None:
        """Pass if ``path`` exists and ``conn`` has access ``need``; else ENOENT or EACCES."""
        if not view.exists(path):
            raise self._missing(conn, view, path, need)
        if not self._may(conn, view, path, need):
            raise EACCES(path)

    def _missing(
        self, conn: Connection, view: View, path: str, need: int = perms.READ
    ) -> XenStoreError:
        """ENOENT, unless the caller may not even learn that: EACCES hides existence.

        As cxenstored, the nearest existing ancestor must grant the access the
        request asked for (read to read, write to write or remove).
        """
        if conn.privileged:
            return ENOENT(path)
        above = self._nearest_existing(view, path)
        return ENOENT(path) if self._may(conn, view, above, need & perms.BOTH) else EACCES(path)

    @staticmethod
    def _nearest_existing(view: View, path: str) -> str:
        while True:
            path = paths.parent(path)
            if view.exists(path):
                return path

    def _check_create(self, conn: Connection, view: View, path: str) -> None:
        """Creating a node needs write access to its nearest existing ancestor (not read)."""
        if not conn.privileged:
            above = self._nearest_existing(view, path)
            if not self._may(conn, view, above, perms.WRITE):
                raise EACCES(path)
            levels = path.count("/") - (above.count("/") if above != paths.ROOT else 0)
            owned = self.store.owned.get(conn.domid, 0) + self._pending(view, conn)[0]
            if self._over(conn, "nodes", owned + levels):
                self._guest_log(conn, f"nodes quota hit at {path}")
                raise ENOSPC(f"domain {conn.domid} owns too many nodes")
            self._check_size(conn, above, 0, path[len(above):].lstrip("/").split("/")[0])

    def _injected_write_error(self, path: str) -> None:
        """Raise the error CONTROL fault write-errno armed for ``path``, if any."""
        if self.faults.write_errnos:  # nothing to walk on a daemon without faults
            error = self.faults.write_error(path)
            if error is not None:
                raise error

    def _owner(self, conn: Connection) -> int | None:
        return None if conn.privileged else conn.domid

    def _fire(self, change: Change | None) -> None:
        if change is not None:
            self._effects.extend(self.watches.events(change, self._may_hear))

    def _may_hear(self, conn_id: int, judged_by: tuple[perms.Perms, ...]) -> bool:
        conn = self.connections[conn_id]
        return conn.privileged or any(
            perms.access_for(p, conn.domid, conn.target) & perms.READ for p in judged_by
        )

    # -- node operations ------------------------------------------------------

    def _do_read(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = self._view(conn, tx)
        self._check(conn, view, path, perms.READ)
        return view.value(path)

    def _do_write(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        cut = payload.find(b"\0")
        if cut < 0:
            raise EINVAL("WRITE needs a path and a value")
        path = self._path(conn, payload[:cut].decode("latin-1"))
        self._injected_write_error(path)
        view = self._view(conn, tx)
        self._check_size(conn, path, len(payload) - cut - 1)
        self._check_memory(conn, len(payload), view)
        if view.exists(path):
            if not self._may(conn, view, path, perms.WRITE):
                raise EACCES(path)
        else:
            self._check_create(conn, view, path)
        self._fire(view.write(path, payload[cut + 1 :], self._owner(conn)))
        return OK

    def _do_mkdir(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        self._injected_write_error(path)
        view = self._view(conn, tx)
        if view.exists(path):
            if not self._may(conn, view, path, perms.WRITE):
                raise EACCES(path)
            return OK
        self._check_create(conn, view, path)
        self._fire(view.mkdir(path, self._owner(conn)))
        return OK

    def _do_rm(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        self._injected_write_error(path)
        view = self._view(conn, tx)
        if not view.exists(path):
            error = self._missing(conn, view, path, perms.WRITE)
            # Removing what is already gone is fine, if its parent exists.
            if isinstance(error, ENOENT) and view.exists(paths.parent(path)):
                return OK
            raise error
        if not self._may(conn, view, path, perms.WRITE):
            raise EACCES(path)
        if path == paths.ROOT:
            raise EINVAL("cannot remove /")
        # Removed nodes are only listed when someone watches inside the subtree.
        self._fire(view.remove(path, bool(self.watches.watched_below(path))))
        return OK

    def _do_directory(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = self._view(conn, tx)
        self._check(conn, view, path, perms.READ)
        listing = view.listing(path)
        if len(listing) > PAYLOAD_MAX:
            raise E2BIG("directory listing exceeds the payload limit: use DIRECTORY_PART")
        return listing

    def _do_directory_part(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        fields = split(payload)
        if len(fields) != 2 or len(join(*fields)) != len(payload):
            raise EINVAL("DIRECTORY_PART needs a path and an offset")
        path = self._path(conn, fields[0].decode("latin-1"))
        view = self._view(conn, tx)
        self._check(conn, view, path, perms.READ)
        listing = view.listing(path)
        offset = atoi(fields[1].decode("latin-1"))
        generation = b"%d\0" % view.gencnt(path)
        if offset >= len(listing):
            return generation + b"\0"
        # Whole names only, as many as fit beside the generation and the end mark.
        room = PAYLOAD_MAX - len(generation) - 1
        end = offset + room
        if end >= len(listing):
            return generation + listing[offset:] + b"\0"
        end = listing.rfind(b"\0", offset, end) + 1
        return generation + listing[offset:end]

    def _do_get_perms(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        path = self._path(conn, one_arg(payload))
        view = self._view(conn, tx)
        self._check(conn, view, path, perms.READ)
        return join(*perms.format_list(view.perms(path)))

    def _do_set_perms(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if len(fields) < 2:
            raise EINVAL("SET_PERMS needs a path and at least one permission")
        if self._over(conn, "permissions", len(fields) - 1):
            self._guest_log(conn, "permissions quota hit")
            raise ENOSPC(f"{len(fields) - 1} permission entries")
        new = perms.parse_list([f.decode("latin-1") for f in fields[1:]])
        if new[0].domid >= perms.DOMID_FIRST_RESERVED:
            raise ENOENT("the owner is not a domain")
        raw_path = fields[0].decode("latin-1")
        if paths.is_special(raw_path):
            if raw_path not in paths.SPECIAL_PATHS:
                raise EINVAL(f"no special node {raw_path}")
            if not conn.privileged:
                raise EACCES(raw_path)
            self.special_perms[raw_path] = new
            return OK
        path = self._path(conn, raw_path)
        self._injected_write_error(path)
        view = self._view(conn, tx)
        self._check(conn, view, path, perms.WRITE | perms.OWNER)
        if not conn.privileged and new[0].domid != view.perms(path)[0].domid:
            raise errors.EPERM("only a privileged domain may change a node's owner")
        self._fire(view.set_perms(path, new))
        return OK

    # -- watches -------------------------------------------------------------------

    def _do_watch(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if len(fields) not in (2, 3):
            raise EINVAL("WATCH takes a path, a token and an optional depth")
        depth = None
        if len(fields) == 3:
            if not fields[2].isdigit() or len(fields[2]) > 9:
                raise EINVAL("the watch depth must be a small decimal number")
            depth = int(fields[2])
        raw = fields[0].decode("latin-1")
        wpath = paths.canonical_watch(raw, conn.domid, self._quota(conn, "path-max"))
        if not conn.privileged:
            count = sum(
                len(self.watches.by_conn.get(c.conn_id, ()))
                for c in self.connections.values()
                if c.domid == conn.domid
            )
            if self._over(conn, "watches", count + 1):
                self._guest_log(conn, "watches quota hit")
                raise ENOSPC(f"domain {conn.domid} has too many watches")
            self._check_memory(conn, len(wpath) + len(fields[1]))
        relative_to = None if raw[:1] in ("/", "@") else paths.home(conn.domid) + "/"
        watch = self.watches.add(conn.conn_id, wpath, fields[1], depth, relative_to)
        # The first event fires at once, after the reply, as cxenstored sends it.
        self._after_reply.append(watch.event(wpath))
        return OK

    def _do_unwatch(self, conn: Connection, tx: Transaction | None, payload: bytes) -> bytes:
        fields = split(payload)
        if len(fields) != 2:
            raise EINVAL("UNWATCH takes a path and a token")
        raw = fields[0].decode("latin-1")
        # Canonical form without validation: an invalid path is just not watched.
        wpath = raw if raw[:1] in ("/", "@") else f"{paths.home(conn.domid)}/{raw}"
        self.watches.remove(conn.conn_id, wpath, fields[1])
        return OK

    def _do_reset_watches(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        self.watches.remove_all(conn.conn_id)
        self._abort_all(conn)
        return OK

    def fire_special(self, name: str, domid: int) -> list[Effect]:
        """Events of ``@introduceDomain`` or ``@releaseDomain`` for ``domid``."""
        return list(
            self.watches.special_events(name, domid, self._may_hear, self.special_perms[name])
        )

    # -- transactions ------------------------------------------------------------

    def _do_transaction_start(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        if tx is not None:
            raise EBUSY("already in a transaction")
        if not conn.privileged:
            limit = self._quota(conn, "transactions")
            if limit and self._open_by_domain.get(conn.domid, 0) >= limit:
                self._guest_log(conn, "transactions quota hit")
                raise ENOSPC(f"domain {conn.domid} has {limit} transactions open")
            self._open_by_domain[conn.domid] = self._open_by_domain.get(conn.domid, 0) + 1
        tx_id = conn.next_tx_id
        while tx_id in conn.transactions or tx_id == 0:
            tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.transactions[tx_id] = Transaction(self.store, tx_id)
        return b"%d\0" % tx_id

    def _do_transaction_end(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        if payload not in (b"T\0", b"F\0"):
            raise EINVAL("TRANSACTION_END takes T or F")
        if tx is None:
            raise ENOENT("no transaction")
        self._forget(conn, tx)
        if payload == b"F\0":
            tx.close()
            return OK
        if not conn.privileged:
            self._check_commit_quotas(conn, tx)
        if self.faults.eagain and self.faults.refuse_commit(conn.domid):
            tx.close()  # aborted, as a refused commit is
            refused = errors.EAGAIN(
                f"transaction {tx.tx_id} of connection {conn.conn_id} (domain {conn.domid}) "
                "refused by an injected fault (CONTROL fault eagain)"
            )
            self._explain(conn, tx, refused)
            raise refused
        try:
            changes = tx.commit()
        except errors.EAGAIN as refused:
            self._explain(conn, tx, refused)
            raise
        for change in changes:
            self._fire(change)
        return OK

    def _forget(self, conn: Connection, tx: Transaction) -> None:
        del conn.transactions[tx.tx_id]
        if not conn.privileged:
            left = self._open_by_domain[conn.domid] - 1
            if left:
                self._open_by_domain[conn.domid] = left
            else:  # no entry kept for every domain that ever opened one
                del self._open_by_domain[conn.domid]

    def _abort_all(self, conn: Connection) -> None:
        for tx in list(conn.transactions.values()):
            self._forget(conn, tx)
            tx.close()

    def _remember_commit(self, conn: Connection, packet: Packet) -> None:
        gen = self.store.generation
        # Only the facts here: words are made if a conflict is ever explained.
        self._commits[gen % COMMITS_REMEMBERED] = (
            gen, conn.conn_id, conn.domid, packet.op, packet.tx_id, packet.payload[:80]
        )

    def _committer(self, gen: int) -> str:
        entry = self._commits[gen % COMMITS_REMEMBERED]
        if entry is None or entry[0] != gen:
            return "a commit no longer remembered"
        _, conn_id, domid, op, tx_id, payload = entry
        who = f"connection {conn_id} (domain {domid})"
        if op == Op.TRANSACTION_END:
            return f"{who} committing transaction {tx_id}"
        what = Op(op).name if op in Op._value2member_map_ else str(op)
        detail = payload.partition(b"\0")[0].decode("latin-1")
        return f"{who} {what} {detail}"

    def _explain(self, conn: Connection, tx: Transaction, refused: XenStoreError) -> None:
        """Say which path and which commit made a commit fail (log and CONTROL conflicts)."""
        lines = []
        for conflict in getattr(refused, "conflicts", [])[:5]:
            by = self._committer(conflict.changed_by)
            lines.append(
                f"transaction {tx.tx_id} of connection {conn.conn_id} (domain {conn.domid}) "
                f"refused: the {conflict.aspect} of {conflict.path} it read was changed by "
                f"commit {conflict.changed_by}: {by}"
            )
        for line in lines or [str(refused)]:
            self.conflicts.append(line)
            if self.config.log_conflicts:
                # INFO: retried conflicts are routine; -V shows them.
                self._effects.append(Log(line, logging.INFO))

    # -- domains and control ---------------------------------------------------

    def _do_get_domain_path(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        return paths.home(atoi(one_arg(payload))).encode() + b"\0"

