"""C → ours: cxenstored 4.17 live-updated into our daemon, its clients never reconnecting.

``xenstore-control live-update WRAPPER`` makes cxenstored dump its state to
``state_dump`` in its run directory (the test's directory, under the launcher)
and exec WRAPPER with its own arguments plus ``-U`` (here ``-N -P -U``), keeping
the listening socket and every client socket open. The wrapper drops the
launcher's shim (``LD_PRELOAD``: ours has no use for it) and execs
``python -m xenstore.daemon`` with those arguments: it restores the state,
serves the inherited sockets, and sends the control client the OK cxenstored
queued for it.
"""

from __future__ import annotations

import os

from tests.reference.liveupdate import live_update, to_ours
from xenstore.client import Client
from xsref import launcher


def test_cxenstored_live_updates_into_ours(ref_daemon: launcher.ReferenceDaemon) -> None:
    socket_path = ref_daemon.socket_path
    wrapper = to_ours(ref_daemon.directory)
    with Client(socket_path) as watcher, Client(socket_path) as writer:
        writer.write("/data/binary", b"\x00\xff\x01end")
        writer.write("/data/empty", b"")
        writer.set_perms("/data/binary", ["n0", "r3"])
        writer.watch("@releaseDomain", "rel")  # a second connection's watch
        watcher.watch("/data", "before")
        assert watcher.read_watch(timeout=5) == ("/data", "before")  # its first event
        before = {p: (writer.read(p), writer.get_perms(p)) for p in
                  ("/", "/data", "/data/binary", "/data/empty", "/tool")}

        live_update(socket_path, wrapper, ref_daemon.running, ref_daemon.stderr_text)

        # The same connections, now ours: same answers, and the watch still fires.
        after = {p: (writer.read(p), writer.get_perms(p)) for p in before}
        assert after == before
        writer.write("/data/new", b"after")
        assert watcher.read_watch(timeout=5) == ("/data/new", "before")
        with Client(socket_path) as fresh:  # the inherited listening socket accepts
            assert fresh.read("/data/new") == b"after"
            assert fresh.read("/data/binary") == b"\x00\xff\x01end"
    assert not os.path.exists(os.path.join(ref_daemon.directory, "state_dump"))
