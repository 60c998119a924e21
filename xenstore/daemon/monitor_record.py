"""What one monitor line says about one request: pure, no I/O (the feed is in
:mod:`xenstore.daemon.monitor`).

A line is a JSON object. Every line has ``seq`` (counts every line made, so a
reader sees gaps), ``time`` (seconds since the epoch), ``conn``, ``domid`` and
``op``. A request's line also has ``req_id``, ``tx`` (0 outside a transaction),
what the request named (``path``; ``value`` for WRITE, cut to
:data:`VALUE_MAX` bytes with ``value_bytes`` giving the whole length; ``perms``
for SET_PERMS; ``token`` for WATCH/UNWATCH; ``args`` for the domain ops),
``reply`` (``OK`` or the error's name) and ``events``: the watch events the
request caused, each ``{"conn", "domid", "path", "token"}``, in the order they
were sent. A committed transaction lists its ``changes`` (``op``, ``path`` and
``value`` or ``perms``) because its watch events alone may not name them all.

Paths are made absolute the way the daemon resolves them, so a reader keeping a
copy of the tree needs no knowledge of who is relative to what; a watch
event's path stays as the watcher was told it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xenstore import paths
from xenstore.daemon.effects import Effect, Send
from xenstore.perms import Perms
from xenstore.protocol.codec import Packet, split
from xenstore.protocol.ops import Op, op_name

#: A value is shown up to this many bytes: enough to read, never a page of binary.
VALUE_MAX = 200
#: Events and transaction changes listed per line; beyond, only their count. A write
#: seen by a thousand watchers must not make a line the size of a megabyte.
EVENTS_MAX = 256
CHANGES_MAX = 256
#: Requests that change the store or the watch registry: the feed's default set.
CHANGING = frozenset((
    Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS, Op.TRANSACTION_END, Op.WATCH, Op.UNWATCH,
    Op.RESET_WATCHES, Op.INTRODUCE, Op.RELEASE, Op.RESUME, Op.SET_TARGET,
))
#: A transaction's log entry kinds, by the op that makes them.
_KIND_OP = {"write": "WRITE", "mkdir": "MKDIR", "perms": "SET_PERMS", "rm": "RM"}

TxLog = Sequence[tuple[str, str, "bytes | Perms | None", "int | None"]]


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def absolute(path: str, domid: int) -> str:
    """``path`` as the daemon resolves it for ``domid`` (no checks: the reply has them)."""
    if path.startswith(("/", "@")) or not path:
        return path
    return f"{paths.home(domid)}/{path}"


def _value(record: dict[str, object], value: bytes) -> None:
    record["value"] = text(value[:VALUE_MAX])
    if len(value) > VALUE_MAX:
        record["value_bytes"] = len(value)


def _arguments(record: dict[str, object], op: int, payload: bytes, domid: int) -> None:
    """What the request named, by op."""
    if op == Op.WRITE:
        path, _, value = payload.partition(b"\0")
        record["path"] = absolute(text(path), domid)
        _value(record, value)
        return
    fields = split(payload)
    if op in (Op.WATCH, Op.UNWATCH):
        if fields:
            record["path"] = absolute(text(fields[0]), domid)
        if len(fields) > 1:
            record["token"] = text(fields[1])
        if len(fields) > 2:
            record["depth"] = text(fields[2])
    elif op == Op.SET_PERMS:
        if fields:
            record["path"] = absolute(text(fields[0]), domid)
        record["perms"] = " ".join(text(f) for f in fields[1:])
    elif op == Op.TRANSACTION_END:
        record["commit"] = payload == b"T\0"
    elif op in (Op.MKDIR, Op.RM, Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.DIRECTORY_PART):
        if fields:
            record["path"] = absolute(text(fields[0]), domid)
    elif fields:
        record["args"] = [text(f[:VALUE_MAX]) for f in fields[:8]]


def changes(log: TxLog) -> list[dict[str, object]]:
    """A committed transaction's changes, as its log recorded them."""
    out: list[dict[str, object]] = []
    for kind, path, arg, _owner in log[:CHANGES_MAX]:
        change: dict[str, object] = {"op": _KIND_OP.get(kind, kind), "path": path}
        if isinstance(arg, bytes):
            _value(change, arg)
        elif isinstance(arg, tuple):
            change["perms"] = " ".join(str(p) for p in arg)
        out.append(change)
    return out


def request(
    conn_id: int,
    domid: int,
    packet: Packet,
    effects: Sequence[Effect],
    domid_of: Callable[[int], int | None],
    tx_log: TxLog | None = None,
) -> dict[str, object]:
    """The line for ``packet`` from ``conn_id`` (of ``domid``), which made ``effects``.

    ``domid_of`` gives a connection's domain (for the watchers told);
    ``tx_log``: the log of the transaction this request committed, if it was one.
    """
    op = packet.op
    record: dict[str, object] = {
        "conn": conn_id, "domid": domid,
        "op": op_name(op),
        "req_id": packet.req_id, "tx": packet.tx_id,
    }
    _arguments(record, op, packet.payload, domid)
    events: list[dict[str, object]] = []
    omitted = 0
    for effect in effects:
        if type(effect) is not Send:
            continue
        sent = effect.packet
        if sent.op == Op.WATCH_EVENT:
            if len(events) >= EVENTS_MAX:
                omitted += 1
                continue
            fields = split(sent.payload)
            events.append({
                "conn": effect.conn_id, "domid": domid_of(effect.conn_id),
                "path": text(fields[0]) if fields else "",
                "token": text(fields[1]) if len(fields) > 1 else "",
            })
        elif effect.conn_id == conn_id and sent.req_id == packet.req_id:
            record["reply"] = text(sent.payload.rstrip(b"\0")) if sent.op == Op.ERROR else "OK"
    if tx_log is not None and record.get("reply") == "OK":
        record["changes"] = changes(tx_log)
        if len(tx_log) > CHANGES_MAX:
            record["changes_omitted"] = len(tx_log) - CHANGES_MAX
    record["events"] = events
    if omitted:
        record["events_omitted"] = omitted
    return record
