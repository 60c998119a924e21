"""One fuzz input for the migration stream: bytes as ``pyxenstored --restore`` reads them.

:func:`check` is the whole oracle of ``fuzz/stream_atheris.py``. The only
acceptable outcomes for any bytes are a :class:`StreamError` or a stream that
reads; and a stream that reads must

- write back byte for byte (:func:`~xenstore.migration.stream.write` of what
  :func:`~xenstore.migration.stream.read_located` gave: the reader's promise);
- either fail to load with a :class:`StreamError`, or load into a fresh server
  (:func:`~xenstore.migration.restore.server_from`, what ``--restore`` runs)
  whose invariants hold (:func:`xenstore.daemon.invariants.problems`, which
  includes ``Store.check``);
- and then dump, write, read and load again into the same tree, special perms
  and domains, the invariants holding there too;
- and, as ``pyxenstored -U`` reads it (:func:`~xenstore.migration.adopt.live_server_from`,
  our carried transactions included), fail with a :class:`StreamError` or give a
  server whose invariants hold.

Anything else (another exception, a difference, a broken invariant) raises
:class:`Finding`. A hang is libFuzzer's to report (``-timeout``).

:func:`seeds` makes starting inputs from real streams: dumps of populated
servers and the stream cxenstored 4.17 wrote (``tests/migration/data``).
"""

from __future__ import annotations

from pathlib import Path

from xenstore.daemon import invariants
from xenstore.daemon.core import Server
from xenstore.migration.adopt import live_server_from
from xenstore.migration.records import StreamError
from xenstore.migration.restore import server_from
from xenstore.migration.snapshot import dump
from xenstore.migration.stream import read_located, write
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

#: The stream cxenstored 4.17 wrote for a live update (see tests/migration/test_stream.py).
CXENSTORED_DUMP = (Path(__file__).resolve().parents[1] / "tests" / "migration" / "data"
                   / "cxenstored-4.17.state_dump")


class Finding(AssertionError):
    """Something the stream fuzzer must report."""


def _shape(server: Server) -> tuple[object, ...]:
    store = server.store
    tree = [(path, store.value(path), store.perms(path)) for path in store.walk("/")]
    domains = sorted((d.domid, d.evtchn, d.target) for d in server.domains.values())
    return tree, dict(server.special_perms), domains


def check(data: bytes) -> None:
    """Judge one input; raises :class:`Finding`."""
    try:
        located = read_located(data)
    except StreamError:
        return
    except Exception as exc:
        raise Finding("read_located raised something other than StreamError") from exc
    try:
        again = write(record for _, record in located)
    except Exception as exc:
        raise Finding("write raised on records read_located accepted") from exc
    if again != bytes(data):
        raise Finding(f"write(read(data)) differs from data ({len(again)} vs {len(data)} bytes)")
    try:
        server, _ = server_from(data)
    except StreamError:
        return
    except Exception as exc:
        raise Finding("restoring raised something other than StreamError") from exc
    found = invariants.problems(server)
    if found:
        raise Finding("after the restore: " + "; ".join(found))
    try:
        second, _ = server_from(write(dump(server.state)))
    except Exception as exc:
        raise Finding("the restored server's own dump does not restore") from exc
    found = invariants.problems(second)
    if found:
        raise Finding("after restoring the restored server's dump: " + "; ".join(found))
    if _shape(second) != _shape(server):
        raise Finding("dump and restore of a restored server changed its state")
    _check_adopt(data)


def _check_adopt(data: bytes) -> None:
    try:
        adopted, _ = live_server_from(data)
    except StreamError:
        return
    except Exception as exc:
        raise Finding("adopting (-U) raised something other than StreamError") from exc
    found = invariants.problems(adopted)
    if found:
        raise Finding("after adopting (-U): " + "; ".join(found))


# -- seeds -------------------------------------------------------------------------


def _handle(server: Server, conn: int, op: Op, payload: bytes) -> None:
    server.handle(conn, Packet(op, 1, 0, payload))


def populated() -> Server:
    """A server with a bit of everything a dump holds: values, perms, domains, watches."""
    server = Server()
    one, two = server.connect(), server.connect()
    for op, payload in [
        (Op.WRITE, b"/data/binary\0\x00\xff\x01end"),
        (Op.WRITE, b"/data/empty\0"),
        (Op.MKDIR, b"/data/dir/deeper\0"),
        (Op.INTRODUCE, b"5\x0099\x0011\x00"),
        (Op.INTRODUCE, b"6\x0098\x0012\x00"),
        (Op.SET_TARGET, b"6\x005\x00"),
        (Op.WRITE, b"/local/domain/5/x\0five"),
        (Op.SET_PERMS, b"/local/domain/5/x\0b5\0r6\0w0\0"),
        (Op.SET_PERMS, b"@releaseDomain\0n0\0r5\0"),
        (Op.WATCH, b"/data\0one\0"),
    ]:
        _handle(server, one, op, payload)
    _handle(server, two, Op.WATCH, b"@introduceDomain\0intro\0")
    guest = server.connect(5, privileged=False)
    _handle(server, guest, Op.WATCH, b"x\0rel\0")
    return server


def with_transactions() -> Server:
    """A server with open transactions over changed nodes (a forced live update's)."""
    server = populated()
    reader, writer = server.connect(), server.connect()
    server.handle(reader, Packet(Op.TRANSACTION_START, 1, 0, b"\0"))
    server.handle(reader, Packet(Op.READ, 2, 1, b"/data/binary\0"))
    server.handle(reader, Packet(Op.WRITE, 3, 1, b"/data/dir/mine\0x"))
    server.handle(reader, Packet(Op.SET_PERMS, 4, 1, b"/data/empty\0n0\0r5\0"))
    server.handle(reader, Packet(Op.RM, 5, 1, b"/data/dir/deeper\0"))
    _handle(server, writer, Op.WRITE, b"/data/binary\0changed")
    _handle(server, writer, Op.RM, b"/data/empty\0")
    return server


def seeds() -> list[bytes]:
    """Starting inputs from real streams (the fuzzer mutates them)."""
    carried = with_transactions()
    found = [
        write(dump(Server().state)),
        write(dump(populated().state, socket_fd=3, fds={1: 10}, dom0_evtchn=4,
                   outputs={1: b"\x02\0\0\0pending"})),
        write(dump(carried.state, socket_fd=3, fds=dict.fromkeys(carried.connections, 9),
                   transactions=True)),
    ]
    if CXENSTORED_DUMP.exists():
        found.append(CXENSTORED_DUMP.read_bytes())
    return found


def write_seeds(directory: Path) -> list[Path]:
    """Write :func:`seeds` into ``directory`` (made if missing) as ``seed-N``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index, seed in enumerate(seeds()):
        path = directory / f"seed-{index}"
        path.write_bytes(seed)
        written.append(path)
    return written
