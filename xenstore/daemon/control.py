"""CONTROL: the daemon's commands (``xenstore-control``), as cxenstored words them.

A concern of the core, composed by :class:`~xenstore.daemon.core.Server`. Replies that cxenstored
also gives (``check``, ``quota``, ``log``...) use its exact text, so scripts
parsing them keep working; ``conflicts``, the domain-lifecycle commands and
``fault`` (:mod:`xenstore.daemon.faults`, only with ``--faults``) are ours.

Every reply fits in one message (``PAYLOAD_MAX``): a list that could outgrow
it (``conflicts``) shows its newest entries and says how many it left out.
cxenstored cuts nothing: a reply over the limit becomes E2BIG there (as it
would here, through the last check in ``Server.handle``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xenstore.daemon import invariants
from xenstore.daemon.domains import parse_domid, parse_number
from xenstore.daemon.effects import Log, Outbox, TraceFile, WriteReport, WriteSnapshot
from xenstore.daemon.live_update import LiveUpdateOps
from xenstore.daemon.quotas import LABELS
from xenstore.daemon.replies import OK, newest_that_fit
from xenstore.errors import EINVAL, EIO, ENOENT
from xenstore.migration import snapshot, stream
from xenstore.protocol.codec import split

if TYPE_CHECKING:
    from xenstore.daemon.domain_ops import DomainOps
    from xenstore.daemon.quotas import Quotas
    from xenstore.daemon.state import Connection, ServerState
    from xenstore.daemon.tx_ops import ConflictExplainer
    from xenstore.transactions import Transaction


HELP = (
    "check\t\n"
    "log\ton|off\n"
    "live-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
    "logfile\t<file>\n"
    "memreport\t[<file>]\n"
    "print\t<string>\n"
    "snapshot\t<file>\n"
    "quota\t[set <name> <val>|<domid>]\n"
    "quota-soft\t[set <name> <val>]\n"
    "conflicts\t\n"
    "domain-shutdown\t<domid>\n"
    "domain-destroy\t<domid>\n"
    "fault\t[eagain <n> [<domid>]|write-errno <path> <errno>|off|event-delay <seconds>|clear]"
    " (only with --faults)\n"
    "help\t\n"
)

Command = Callable[[list[bytes], Outbox], bytes]


class ControlOps:
    """The CONTROL request and its commands."""

    def __init__(self, state: ServerState, quotas: Quotas, domains: DomainOps,
                 explainer: ConflictExplainer) -> None:
        self.state = state
        self.quotas = quotas
        self.domains = domains
        self.explainer = explainer
        self.live_update = LiveUpdateOps(state)

    def control(self, conn: Connection, tx: Transaction | None, payload: bytes,
                out: Outbox) -> bytes:
        fields = split(payload)
        if not fields:
            raise EINVAL("CONTROL needs a command")
        if fields[0] == b"live-update":  # a conversation: it needs the connection
            return self.live_update.command(conn, fields[1:], out)
        command = self.control_commands().get(fields[0])
        if command is None:
            raise EINVAL(f"unknown CONTROL command {fields[0]!r}")
        return command(fields[1:], out)

    def control_commands(self) -> dict[bytes, Command]:
        """The CONTROL commands by name: each takes the arguments, returns the reply."""
        return {
            b"help": self._control_help,
            b"check": self._control_check,
            b"log": self._control_log,
            b"logfile": self._control_logfile,
            b"memreport": self._control_memreport,
            b"print": self._control_print,
            b"snapshot": self._control_snapshot,
            b"quota": self._control_quota,
            b"quota-soft": self._control_quota_soft,
            b"conflicts": self._control_conflicts,
            b"domain-shutdown": lambda args, out: self._control_lifecycle(args, out, False),
            b"domain-destroy": lambda args, out: self._control_lifecycle(args, out, True),
            b"fault": lambda args, out: self.state.faults.command(args, out.effects),
        }

    @staticmethod
    def _arity(args: list[bytes], *allowed: int) -> None:
        if len(args) not in allowed:
            raise EINVAL("wrong number of arguments")

    def _control_help(self, args: list[bytes], out: Outbox) -> bytes:
        self._arity(args, 0)
        return HELP.encode() + b"\0"

    def _control_check(self, args: list[bytes], out: Outbox) -> bytes:
        """Verify the server's invariants; a violation is logged and answered EIO."""
        self._arity(args, 0)
        problems = invariants.problems(self.state)
        for problem in problems:
            out.add(Log(f"check: {problem}"))
        if problems:
            raise EIO(f"{len(problems)} problems in the daemon's state")
        return OK

    def _control_log(self, args: list[bytes], out: Outbox) -> bytes:
        self._arity(args, 1)
        if args[0] not in (b"on", b"off"):
            raise EINVAL("log on|off")
        path = self.state.config.trace_file
        if path is None and args[0] == b"on":
            raise EINVAL("no trace file: set one with logfile")
        out.add(TraceFile(path if args[0] == b"on" else None))
        return OK

    def _control_logfile(self, args: list[bytes], out: Outbox) -> bytes:
        self._arity(args, 1)
        self.state.config.trace_file = args[0].decode("latin-1")
        out.add(TraceFile(self.state.config.trace_file))
        return OK

    def _control_memreport(self, args: list[bytes], out: Outbox) -> bytes:
        """A summary of what the daemon holds, to the log (or the file given: a file the
        daemon cannot write is logged, as the reply has gone by then)."""
        self._arity(args, 0, 1)
        lines = [
            f"nodes: {len(self.state.store)}",
            f"saved versions: {sum(len(v) for v in self.state.store.history.values())}",
            f"watches: {len(self.state.watches)}",
            f"connections: {len(self.state.connections)}",
            f"transactions: {sum(len(c.transactions) for c in self.state.connections.values())}",
            f"domains: {len(self.state.domains)}",
        ]
        for reporter in self.state.reporters:  # what the shell holds (tasks, sockets)
            lines.extend(reporter())
        if args:  # the shell writes it: the core does no I/O
            out.add(WriteReport(args[0].decode("utf-8", "replace"),
                                "".join(line + "\n" for line in lines)))
        else:
            out.extend(Log(f"memreport: {line}") for line in lines)
        return OK

    def _control_print(self, args: list[bytes], out: Outbox) -> bytes:
        self._arity(args, 1)
        out.add(Log(f"control: {args[0].decode('latin-1')}"))
        return OK

    def _control_snapshot(self, args: list[bytes], out: Outbox) -> bytes:
        """The whole state as Xen's migration stream, for ``pyxenstored --restore``
        (the shell writes it; a file it cannot write is logged)."""
        self._arity(args, 1)
        data = stream.write(snapshot.dump(self.state))
        out.add(WriteSnapshot(args[0].decode("utf-8", "surrogateescape"), data))
        return OK

    def _control_quota(self, args: list[bytes], out: Outbox) -> bytes:
        if not args:
            lines = ["Quota settings:"] + [
                f"{name:<17}: {self.state.config.quotas[name]:8d} {text}"
                for name, text in LABELS.items()
            ]
            return "".join(line + "\n" for line in lines).encode() + b"\0"
        if args[0] == b"set":
            self._arity(args, 3)
            name = args[1].decode("latin-1")
            if name not in self.state.config.quotas:
                raise EINVAL(f"no quota named {name!r}")
            self.state.config.quotas[name] = parse_number(args[2])
            return OK
        self._arity(args, 1)
        domid = parse_domid(args[0], allow_zero=True)
        if domid != 0 and domid not in self.state.domains:
            raise ENOENT(f"domain {domid} is not introduced")
        usage = {
            "nodes": self.state.store.owned.get(domid, 0),
            "watches": sum(
                len(self.state.watches.by_conn.get(c.conn_id, ()))
                for c in self.state.connections.values() if c.domid == domid
            ),
            "transactions": sum(
                len(c.transactions) for c in self.state.connections.values() if c.domid == domid
            ),
        }
        lines = [f"Domain {domid}:"] + [f"{name:<16}: {value:8d}" for name, value in usage.items()]
        return "".join(line + "\n" for line in lines).encode() + b"\0"

    def _control_quota_soft(self, args: list[bytes], out: Outbox) -> bytes:
        if not args:
            return (
                "Quota settings:\n"
                f"{'memory':<17}: {self.quotas.soft_memory:8d} "
                "Total Xenstore memory per domain (warning level)\n"
            ).encode() + b"\0"
        self._arity(args, 3)
        if args[:2] != [b"set", b"memory"]:
            raise EINVAL("quota-soft set memory <val>")
        self.quotas.soft_memory = parse_number(args[2])
        return OK

    def _control_conflicts(self, args: list[bytes], out: Outbox) -> bytes:
        """The latest refused commits explained, as many of the newest as fit."""
        self._arity(args, 0)
        where = ("; the daemon's log has every one when it runs with -V"
                 if self.state.config.log_conflicts else "")
        return newest_that_fit(
            self.explainer.conflicts, lambda count: f"({count} earlier conflicts left out{where})"
        )

    def _control_lifecycle(self, args: list[bytes], out: Outbox, dead: bool) -> bytes:
        """What Xen would report of a domain: it shut down, or it died."""
        self._arity(args, 1)
        self.domains.domain_died(parse_domid(args[0]), dead, out)
        return OK
