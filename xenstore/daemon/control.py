"""CONTROL: the daemon's commands (``xenstore-control``), as cxenstored words them.

A mixin of :class:`~xenstore.daemon.core.Server`. Replies that cxenstored
also gives (``check``, ``quota``, ``log``...) use its exact text, so scripts
parsing them keep working; ``conflicts``, the domain-lifecycle commands and
``fault`` (:mod:`xenstore.daemon.faults`, only with ``--faults``) are ours.

Every reply fits in one message (``PAYLOAD_MAX``): a list that could outgrow
it (``conflicts``) shows its newest entries and says how many it left out.
cxenstored cuts nothing: a reply over the limit becomes E2BIG there (as it
would here, through the last check in ``Server.handle``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from xenstore.daemon import invariants
from xenstore.daemon.domains import parse_domid, parse_number
from xenstore.daemon.effects import Effect, Log, TraceFile
from xenstore.errors import EINVAL, EIO, ENOENT
from xenstore.protocol.codec import split
from xenstore.protocol.ops import PAYLOAD_MAX

if TYPE_CHECKING:
    from collections import deque

    from xenstore.daemon.config import Config
    from xenstore.daemon.core import Connection, Server
    from xenstore.daemon.domains import Domain
    from xenstore.daemon.faults import Faults
    from xenstore.daemon.watches import WatchRegistry
    from xenstore.store import Store
    from xenstore.transactions import Transaction

OK = b"OK\0"

HELP = (
    "check\t\n"
    "log\ton|off\n"
    "logfile\t<file>\n"
    "memreport\t[<file>]\n"
    "print\t<string>\n"
    "quota\t[set <name> <val>|<domid>]\n"
    "quota-soft\t[set <name> <val>]\n"
    "conflicts\t\n"
    "domain-shutdown\t<domid>\n"
    "domain-destroy\t<domid>\n"
    "fault\t[eagain <n> [<domid>]|write-errno <path> <errno>|off|event-delay <seconds>|clear]"
    " (only with --faults)\n"
    "help\t\n"
)

#: The text cxenstored's ``quota`` prints for each quota.
QUOTA_TEXT = {
    "nodes": "Nodes per domain",
    "watches": "Watches per domain",
    "transactions": "Transactions per domain",
    "outstanding": "Outstanding requests per domain",
    "transaction-nodes": "Max. number of accessed nodes per transaction",
    "memory": "Total Xenstore memory per domain (error level)",
    "node-size": "Max. size of a node",
    "path-max": "Max. length of a node path",
    "permissions": "Max. number of permissions per node",
}

Command = Callable[[list[bytes]], bytes]


def newest_that_fit(lines: Sequence[str], left_out: Callable[[int], str]) -> bytes:
    """A reply of ``lines`` (oldest first) that fits in one message, NUL included.

    When they do not all fit, the newest that do are kept, in order, followed by
    the line ``left_out(count)``; a newest line too long on its own is cut (``...``).
    """
    encoded = [line.encode() + b"\n" for line in lines]
    if sum(map(len, encoded)) < PAYLOAD_MAX:
        return b"".join(encoded) + b"\0"
    # Room for the note at its longest (every line left out) and the NUL.
    room = PAYLOAD_MAX - 1 - len(left_out(len(lines)).encode()) - 1
    kept: list[bytes] = []
    for line in reversed(encoded):
        if len(line) > room:
            if not kept:  # the newest alone is too long: show its start
                kept.append(line[: room - 4] + b"...\n")
            break
        kept.append(line)
        room -= len(line)
    count = len(lines) - len(kept)
    note = left_out(count).encode() + b"\n" if count else b""
    return b"".join(reversed(kept)) + note + b"\0"


class ControlOps:
    """The CONTROL request and its commands."""

    if TYPE_CHECKING:  # what the Server provides
        config: Config
        store: Store
        watches: WatchRegistry
        connections: dict[int, Connection]
        domains: dict[int, Domain]
        conflicts: deque[str]
        faults: Faults
        soft_memory: int
        reporters: list[Callable[[], list[str]]]
        _effects: list[Effect]

        def domain_died(self, domid: int, dead: bool) -> list[Effect]: ...

    def _do_control(
        self, conn: Connection, tx: Transaction | None, payload: bytes
    ) -> bytes:
        fields = split(payload)
        if not fields:
            raise EINVAL("CONTROL needs a command")
        command = self.control_commands().get(fields[0])
        if command is None:
            raise EINVAL(f"unknown CONTROL command {fields[0]!r}")
        return command(fields[1:])

    def control_commands(self) -> dict[bytes, Command]:
        """The CONTROL commands by name: each takes the arguments, returns the reply."""
        return {
            b"help": self._control_help,
            b"check": self._control_check,
            b"log": self._control_log,
            b"logfile": self._control_logfile,
            b"memreport": self._control_memreport,
            b"print": self._control_print,
            b"quota": self._control_quota,
            b"quota-soft": self._control_quota_soft,
            b"conflicts": self._control_conflicts,
            b"domain-shutdown": lambda args: self._control_lifecycle(args, dead=False),
            b"domain-destroy": lambda args: self._control_lifecycle(args, dead=True),
            b"fault": lambda args: self.faults.command(args, self._effects),
        }

    @staticmethod
    def _arity(args: list[bytes], *allowed: int) -> None:
        if len(args) not in allowed:
            raise EINVAL("wrong number of arguments")

    def _control_help(self, args: list[bytes]) -> bytes:
        self._arity(args, 0)
        return HELP.encode() + b"\0"

    def _control_check(self, args: list[bytes]) -> bytes:
        """Verify the server's invariants; a violation is logged and answered EIO."""
        self._arity(args, 0)
        problems = invariants.problems(cast("Server", self))
        for problem in problems:
            self._effects.append(Log(f"check: {problem}"))
        if problems:
            raise EIO(f"{len(problems)} problems in the daemon's state")
        return OK

    def _control_log(self, args: list[bytes]) -> bytes:
        self._arity(args, 1)
        if args[0] not in (b"on", b"off"):
            raise EINVAL("log on|off")
        path = self.config.trace_file
        if path is None and args[0] == b"on":
            raise EINVAL("no trace file: set one with logfile")
        self._effects.append(TraceFile(path if args[0] == b"on" else None))
        return OK

    def _control_logfile(self, args: list[bytes]) -> bytes:
        self._arity(args, 1)
        self.config.trace_file = args[0].decode("latin-1")
        self._effects.append(TraceFile(self.config.trace_file))
        return OK

    def _control_memreport(self, args: list[bytes]) -> bytes:
        """A summary of what the daemon holds, to the log (or the file given)."""
        self._arity(args, 0, 1)
        lines = [
            f"nodes: {len(self.store)}",
            f"saved versions: {sum(len(v) for v in self.store.history.values())}",
            f"watches: {len(self.watches)}",
            f"connections: {len(self.connections)}",
            f"transactions: {sum(len(c.transactions) for c in self.connections.values())}",
            f"domains: {len(self.domains)}",
        ]
        for reporter in self.reporters:  # what the shell holds (tasks, sockets)
            lines.extend(reporter())
        if args:
            try:
                with open(args[0], "w") as report:
                    report.write("".join(line + "\n" for line in lines))
            except OSError as exc:
                raise EINVAL(f"memreport: {exc}") from None
        else:
            self._effects.extend(Log(f"memreport: {line}") for line in lines)
        return OK

    def _control_print(self, args: list[bytes]) -> bytes:
        self._arity(args, 1)
        self._effects.append(Log(f"control: {args[0].decode('latin-1')}"))
        return OK

    def _control_quota(self, args: list[bytes]) -> bytes:
        if not args:
            lines = ["Quota settings:"] + [
                f"{name:<17}: {self.config.quotas[name]:8d} {text}"
                for name, text in QUOTA_TEXT.items()
            ]
            return "".join(line + "\n" for line in lines).encode() + b"\0"
        if args[0] == b"set":
            self._arity(args, 3)
            name = args[1].decode("latin-1")
            if name not in self.config.quotas:
                raise EINVAL(f"no quota named {name!r}")
            self.config.quotas[name] = parse_number(args[2])
            return OK
        self._arity(args, 1)
        domid = parse_domid(args[0], allow_zero=True)
        if domid != 0 and domid not in self.domains:
            raise ENOENT(f"domain {domid} is not introduced")
        usage = {
            "nodes": self.store.owned.get(domid, 0),
            "watches": sum(
                len(self.watches.by_conn.get(c.conn_id, ()))
                for c in self.connections.values() if c.domid == domid
            ),
            "transactions": sum(
                len(c.transactions) for c in self.connections.values() if c.domid == domid
            ),
        }
        lines = [f"Domain {domid}:"] + [f"{name:<16}: {value:8d}" for name, value in usage.items()]
        return "".join(line + "\n" for line in lines).encode() + b"\0"

    def _control_quota_soft(self, args: list[bytes]) -> bytes:
        if not args:
            return (
                "Quota settings:\n"
                f"{'memory':<17}: {self.soft_memory:8d} "
                "Total Xenstore memory per domain (warning level)\n"
            ).encode() + b"\0"
        self._arity(args, 3)
        if args[:2] != [b"set", b"memory"]:
            raise EINVAL("quota-soft set memory <val>")
        self.soft_memory = parse_number(args[2])
        return OK

    def _control_conflicts(self, args: list[bytes]) -> bytes:
        """The latest refused commits explained, as many of the newest as fit."""
        self._arity(args, 0)
        where = ("; the daemon's log has every one when it runs with -V"
                 if self.config.log_conflicts else "")
        return newest_that_fit(
            self.conflicts, lambda count: f"({count} earlier conflicts left out{where})"
        )

    def _control_lifecycle(self, args: list[bytes], dead: bool) -> bytes:
        """What Xen would report of a domain: it shut down, or it died."""
        self._arity(args, 1)
        self._effects.extend(self.domain_died(parse_domid(args[0]), dead))
        return OK
