"""Open transactions across a forced live update (``xenstore-control live-update -F``).

Ours → ours: the transactions go on. The same clients, on the same sockets, keep
their tx_ids: reads inside one see the tree as of its start, its own writes are
visible to it alone, and its commit answers what it would have answered without
the update (OK, or EAGAIN when something it read was changed by others, before
or after the update). Ours → cxenstored 4.17: it skips our transaction records
and behaves as its own ``-F`` does: the transactions are gone (ENOENT), nothing
they wrote is in the tree, and everything else is kept.
"""

from __future__ import annotations

import pytest

from tests.reference.liveupdate import comm, our_daemon
from xenstore import errors
from xenstore.client import Client
from xsref import launcher


def test_ours_into_ours_forced_keeps_open_transactions(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslt") as ours, Client(ours.socket_path) as writer, \
            Client(ours.socket_path) as commits, Client(ours.socket_path) as conflicts, \
            Client(ours.socket_path) as reads:
        writer.write("/data/a", b"one")
        writer.write("/data/b", b"one")
        ok = commits.transaction_start()
        assert commits.read("/data/a", ok) == b"one"
        commits.write("/data/mine", b"kept", ok)
        bad = conflicts.transaction_start()
        assert conflicts.read("/data/b", bad) == b"one"
        conflicts.write("/data/theirs", b"lost", bad)
        looking = reads.transaction_start()
        assert reads.directory("/data", looking) == ["a", "b"]
        ours.update("-F", "-t", "1", str(ours.to_ours))
        assert "python" in comm(ours.daemon.pid)  # the same process, ours again
        assert "3 transaction(s)" in ours.said(), ours.said()

        writer.write("/data/b", b"two")  # after the update: what `conflicts` read
        writer.write("/data/c", b"new")
        # Snapshot isolation and own writes, on the same sockets and tx_ids.
        assert reads.read("/data/b", looking) == b"one"
        assert reads.directory("/data", looking) == ["a", "b"]
        assert commits.read("/data/mine", ok) == b"kept"
        with pytest.raises(errors.ENOENT):
            writer.read("/data/mine")
        commits.transaction_end(ok)
        assert writer.read("/data/mine") == b"kept"
        with pytest.raises(errors.EAGAIN):
            conflicts.transaction_end(bad)
        assert not writer.exists("/data/theirs")
        reads.transaction_end(looking)  # read-only: never refused
        with pytest.raises(errors.ENOENT):  # ended: as without the update
            commits.read("/data/a", ok)
        again = commits.transaction_start()
        assert again != ok
        commits.write("/data/again", b"x", again)
        commits.transaction_end(again)
        assert writer.read("/data/again") == b"x"


def test_ours_into_ours_forced_keeps_a_conflict_from_before(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslt") as ours, Client(ours.socket_path) as writer, \
            Client(ours.socket_path) as holder:
        writer.write("/data/a", b"one")
        tx = holder.transaction_start()
        assert holder.read("/data/a", tx) == b"one"
        holder.write("/data/a", b"mine", tx)
        writer.write("/data/a", b"theirs")  # before the update
        ours.update("-F", "-t", "1", str(ours.to_ours))
        assert holder.read("/data/a", tx) == b"mine"
        with pytest.raises(errors.EAGAIN):
            holder.transaction_end(tx)
        assert writer.read("/data/a") == b"theirs"


def test_ours_into_cxenstored_forced_drops_open_transactions(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslt") as ours, Client(ours.socket_path) as writer, \
            Client(ours.socket_path) as holder, Client(ours.socket_path) as watcher:
        writer.write("/data/a", b"one")
        watcher.watch("/data", "w")
        assert watcher.read_watch(timeout=5) == ("/data", "w")
        tx = holder.transaction_start()
        assert holder.read("/data/a", tx) == b"one"
        holder.write("/data/inside", b"x", tx)
        writer.write("/data/b", b"changed")  # a saved version for the snapshot
        assert watcher.read_watch(timeout=5) == ("/data/b", "w")

        ours.update("-F", "-t", "1", "-c", "-N -P", str(ours.to_c))
        assert comm(ours.daemon.pid) == "xenstored"

        # cxenstored skipped our records: the transaction is gone, as its own -F does.
        with pytest.raises(errors.ENOENT):
            holder.read("/data/a", tx)
        with pytest.raises(errors.ENOENT):
            holder.transaction_end(tx)
        assert not writer.exists("/data/inside")
        assert writer.read("/data/a") == b"one"
        assert writer.read("/data/b") == b"changed"
        assert sorted(writer.directory("/data")) == ["a", "b"]
        writer.write("/data/c", b"in C")
        assert watcher.read_watch(timeout=5) == ("/data/c", "w")
        fresh = holder.transaction_start()
        holder.write("/data/d", b"C's own", fresh)
        holder.transaction_end(fresh)
        assert writer.read("/data/d") == b"C's own"
