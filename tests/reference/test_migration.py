"""cxenstored 4.17's own migration stream, read by ours: C → ours, for the tree.

``xenstore-control live-update FILE`` makes cxenstored write its whole state to
``state_dump`` in its run directory (the test's directory, under the launcher)
and exec FILE with ``-U``. FILE here is a wrapper that copies the dump and execs
cxenstored again with the arguments it was given (they end in ``-U``), so the
update completes: the client that asked gets OK from the restored daemon, and the
connections made before it keep working. The test holds a real stream: our reader
must parse it and write it back byte for byte, and a Server restored from it must
hold the tree a client read.

A wrapper that only copied the dump and exited would end the update without an
answer: the control client then reads end of file on its socket, which
libxenstore reports as EBADF ("Starting live update failed: Bad file
descriptor"). That was the failure this test used to xfail on; cxenstored and
the launcher were not at fault.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.reference.liveupdate import control
from xenstore.client import Client
from xenstore.migration import GlobalData, NodeData, RingConnection, WatchData, read, write
from xenstore.migration.restore import server_from
from xsref import launcher

WRAPPER = f"""#!/bin/sh
cp {launcher.RUNDIR}/state_dump {launcher.RUNDIR}/captured
exec {launcher.KINDS["c"]} "$@"
"""


def walk(client: Client, path: str = "/") -> list[tuple[str, bytes, list[str]]]:
    found = [(path, client.read(path), client.get_perms(path))]
    for name in client.directory(path):
        found += walk(client, f"{path.rstrip('/')}/{name}")
    return found


def ours(server_tree: object, path: str) -> list[tuple[str, bytes, list[str]]]:
    from xenstore import perms

    store = server_tree  # a Store
    return [(p, store.value(p), perms.format_list(store.perms(p)))  # type: ignore[attr-defined]
            for p in store.walk(path)]  # type: ignore[attr-defined]


def live_update_dump(daemon: launcher.ReferenceDaemon, tmp_path: Path) -> bytes:
    wrapper = Path(daemon.directory) / "wrapper.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(stat.S_IRWXU)
    done = control(os.path.join(daemon.directory, "socket"), str(wrapper))
    assert done.returncode == 0, done.stderr
    assert daemon.running(), daemon.stderr_text()
    captured = Path(daemon.directory) / "captured"
    return captured.read_bytes()


def test_cxenstored_stream_is_read_and_restored(ref_daemon: launcher.ReferenceDaemon,
                                                tmp_path: Path) -> None:
    socket_path = os.path.join(ref_daemon.directory, "socket")
    with Client(socket_path) as one, Client(socket_path) as two:
        one.write("/data/binary", b"\x00\xff\x01\x80end")
        one.write("/data/empty", b"")
        one.write("/data/dir/leaf", b"x" * 2000)
        one.set_perms("/data/dir", ["r0", "w3", "n5"])
        # Owned by dom0: cxenstored 4.17 cannot restore a node whose owner is a
        # domain it has not been introduced to ("FATAL: write node error
        # restoring node"), though it let a client give it one.
        one.set_perms("/data/dir/leaf", ["b0", "r7"])
        one.watch("/data", "one-token")
        two.watch("/data/dir", "two")
        two.watch("@releaseDomain", "rel")
        one.set_perms("@releaseDomain", ["n0", "r7"])
        expected = walk(one)
        data = live_update_dump(ref_daemon, tmp_path)
        # The same connections, served by the restored daemon.
        assert walk(two) == expected
        one.write("/data/dir/after", b"y")
        events = []  # the watches' initial events come first
        while ("/data/dir/after", "two") not in events:
            events.append(tuple(two.read_watch(timeout=5)))

    records = read(data)
    assert write(records) == data  # byte for byte
    assert isinstance(records[0], GlobalData)
    assert records[1] == RingConnection(1, 0, records[1].evtchn)  # type: ignore[union-attr]
    watches = {(w.path, w.token) for w in records if isinstance(w, WatchData)}
    assert watches == {(b"/data", b"one-token"), (b"/data/dir", b"two"),
                       (b"@releaseDomain", b"rel")}
    assert NodeData(b"/data/binary", b"\x00\xff\x01\x80end",
                    next(r for r in records if isinstance(r, NodeData)
                         and r.path == b"/data/binary").perms) in records

    server, loaded = server_from(data)
    assert ours(server.store, "/") == expected
    assert [str(p) for p in server.special_perms["@releaseDomain"]] == ["n0", "r7"]
    assert loaded.dropped_watches == 3
    conn = server.connect()
    from xenstore.protocol.codec import Packet
    from xenstore.protocol.ops import Op

    reply = server.handle(conn, Packet(Op.CONTROL, 1, 0, b"check\0"))[-1]
    assert reply.packet.payload == b"OK\0"  # type: ignore[union-attr]
