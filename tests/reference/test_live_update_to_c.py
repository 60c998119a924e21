"""Ours → C: our daemon live-updates into cxenstored 4.17, its clients never reconnecting.

Xen's ``xenstore-control live-update -c '-N -P' WRAPPER`` talks to our daemon:
we write ``state_dump`` in ``$XENSTORED_RUNDIR`` (the test's directory) and
exec WRAPPER with ``-N -P -U``, keeping the listening socket and the client
sockets open. WRAPPER sets up what the launcher gives cxenstored (the shim in
``LD_PRELOAD`` and its state directory) and execs it: it reads the dump and
sends the control tool the OK we queued. Then back again (C → ours), where
cxenstored passes its own arguments plus ``-U``, and ours → ours.
"""

from __future__ import annotations

from tests.reference.liveupdate import comm, our_daemon
from xenstore.client import Client
from xsref import launcher

PATHS = ("/", "/data", "/data/binary", "/data/empty", "/tool")


def test_ours_live_updates_into_cxenstored_and_back_and_into_ours(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslu") as ours:
        socket_path, pid = ours.socket_path, ours.daemon.pid
        with (Client(socket_path) as watcher, Client(socket_path) as writer,
              Client(socket_path) as shallow):
            # A watch with a depth: our WATCH_DEPTH record, which cxenstored skips.
            shallow.watch("/tool", "skipped", 0)
            assert shallow.read_watch(timeout=5) == ("/tool", "skipped")
            writer.write("/data/binary", b"\x00\xff\x01end")
            writer.write("/data/empty", b"")
            writer.set_perms("/data/binary", ["n0", "r3"])
            writer.watch("@releaseDomain", "rel")
            watcher.watch("/data", "before")
            assert watcher.read_watch(timeout=5) == ("/data", "before")
            before = {p: (writer.read(p), writer.get_perms(p)) for p in PATHS}
            assert "python" in comm(pid)

            ours.update("-c", "-N -P", str(ours.to_c))
            assert comm(pid) == "xenstored"  # the same process, now cxenstored
            assert not (ours.directory / "state_dump").exists()  # read and removed

            after = {p: (writer.read(p), writer.get_perms(p)) for p in PATHS}
            assert after == before
            writer.write("/data/new", b"in C")
            assert watcher.read_watch(timeout=5) == ("/data/new", "before")
            with Client(socket_path) as fresh:
                assert fresh.read("/data/new") == b"in C"
                assert fresh.read("/data/binary") == b"\x00\xff\x01end"

            # And back: cxenstored passes its own arguments (-N -P -U) on.
            ours.update(str(ours.to_ours))
            assert "python" in comm(pid)
            # cxenstored marks domain 3's entry stale in its dump (no such domain:
            # it grants nothing) and we leave stale entries out.
            back = {**before, "/data/binary": (b"\x00\xff\x01end", ["n0"])}
            assert {p: (writer.read(p), writer.get_perms(p)) for p in PATHS} == back
            writer.write("/data/back", b"ours again")
            assert watcher.read_watch(timeout=5) == ("/data/back", "before")
            with Client(socket_path) as fresh:
                assert fresh.read("/data/new") == b"in C"

            # Ours → ours, with our own arguments passed on (no -c): depth is kept.
            shallow.watch("/data", "shallow", 1)
            assert shallow.read_watch(timeout=5) == ("/data", "shallow")
            ours.update(str(ours.to_ours))
            assert {p: (writer.read(p), writer.get_perms(p)) for p in PATHS} == back
            writer.write("/data/again", b"")
            assert watcher.read_watch(timeout=5) == ("/data/again", "before")
            assert shallow.read_watch(timeout=5) == ("/data/again", "shallow")
            writer.write("/data/again/deep", b"below the depth")
            writer.write("/data/near", b"")
            assert shallow.read_watch(timeout=5) == ("/data/near", "shallow")
