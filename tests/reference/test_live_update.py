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
import subprocess
import sys
from pathlib import Path

from xenstore.client import Client
from xsref import launcher

CONTROL = os.path.join(launcher.XEN_BIN_DIR, "xenstore-control")
REPO = Path(__file__).resolve().parents[2]
WRAPPER = f"""#!/bin/sh
unset LD_PRELOAD
PYTHONPATH={REPO}
export PYTHONPATH
exec {sys.executable} -m xenstore.daemon "$@" -V
"""


def test_cxenstored_live_updates_into_ours(ref_daemon: launcher.ReferenceDaemon) -> None:
    socket_path = ref_daemon.socket_path
    wrapper = Path(ref_daemon.directory) / "to-ours.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o700)
    with Client(socket_path) as watcher, Client(socket_path) as writer:
        writer.write("/data/binary", b"\x00\xff\x01end")
        writer.write("/data/empty", b"")
        writer.set_perms("/data/binary", ["n0", "r3"])
        writer.watch("@releaseDomain", "rel")  # a second connection's watch
        watcher.watch("/data", "before")
        assert watcher.read_watch(timeout=5) == ("/data", "before")  # its first event
        before = {p: (writer.read(p), writer.get_perms(p)) for p in
                  ("/", "/data", "/data/binary", "/data/empty", "/tool")}

        env = {**os.environ, "XENSTORED_PATH": socket_path}
        done = subprocess.run([CONTROL, "live-update", str(wrapper)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr + ref_daemon.stderr_text()
        assert ref_daemon.running(), ref_daemon.stderr_text()
        assert "live update: adopted" in ref_daemon.stderr_text()

        # The same connections, now ours: same answers, and the watch still fires.
        after = {p: (writer.read(p), writer.get_perms(p)) for p in before}
        assert after == before
        writer.write("/data/new", b"after")
        assert watcher.read_watch(timeout=5) == ("/data/new", "before")
        with Client(socket_path) as fresh:  # the inherited listening socket accepts
            assert fresh.read("/data/new") == b"after"
            assert fresh.read("/data/binary") == b"\x00\xff\x01end"
    assert not os.path.exists(os.path.join(ref_daemon.directory, "state_dump"))
