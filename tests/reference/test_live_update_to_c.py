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

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import short_tempdir
from xenstore.client import Client
from xenstore.daemon.spawn import spawn
from xsref import launcher

CONTROL = os.path.join(launcher.XEN_BIN_DIR, "xenstore-control")
REPO = Path(__file__).resolve().parents[2]
TO_C = """#!/bin/sh
LD_PRELOAD={shim}
{state_env}={state}
export LD_PRELOAD {state_env}
exec {binary} "$@"
"""
TO_OURS = f"""#!/bin/sh
unset LD_PRELOAD
PYTHONPATH={REPO}
export PYTHONPATH
exec {sys.executable} -m xenstore.daemon "$@" -V
"""
PATHS = ("/", "/data", "/data/binary", "/data/empty", "/tool")


def _wrappers(directory: Path) -> tuple[Path, Path]:
    state = directory / "state"
    state.mkdir()
    to_c = directory / "to-c.sh"
    to_c.write_text(TO_C.format(shim=launcher.shim_library(), state_env=launcher.STATE_DIR_ENV,
                                state=state, binary=launcher.KINDS["c"]))
    to_ours = directory / "to-ours.sh"
    to_ours.write_text(TO_OURS)
    for wrapper in (to_c, to_ours):
        wrapper.chmod(0o700)
    return to_c, to_ours


def _update(socket_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XENSTORED_PATH": socket_path}
    return subprocess.run([CONTROL, "live-update", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_ours_live_updates_into_cxenstored_and_back_and_into_ours(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    directory = Path(short_tempdir("xslu"))
    socket_path = str(directory / "socket")
    to_c, to_ours = _wrappers(directory)
    env = {**os.environ, "XENSTORED_RUNDIR": str(directory)}
    env.pop("LD_PRELOAD", None)
    daemon = spawn(socket_path, ["-N"], stderr_path=str(directory / "stderr"), env=env)
    said = lambda: (directory / "stderr").read_text()  # noqa: E731
    try:
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
            assert "python" in _comm(daemon.pid)

            done = _update(socket_path, "-c", "-N -P", str(to_c))
            assert done.returncode == 0, done.stderr + said()
            assert daemon.process.poll() is None, said()
            assert _comm(daemon.pid) == "xenstored"  # the same process, now cxenstored
            assert not (directory / "state_dump").exists()  # read and removed

            after = {p: (writer.read(p), writer.get_perms(p)) for p in PATHS}
            assert after == before
            writer.write("/data/new", b"in C")
            assert watcher.read_watch(timeout=5) == ("/data/new", "before")
            with Client(socket_path) as fresh:
                assert fresh.read("/data/new") == b"in C"
                assert fresh.read("/data/binary") == b"\x00\xff\x01end"

            # And back: cxenstored passes its own arguments (-N -P -U) on.
            done = _update(socket_path, str(to_ours))
            assert done.returncode == 0, done.stderr + said()
            assert daemon.process.poll() is None, said()
            assert "python" in _comm(daemon.pid)
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
            done = _update(socket_path, str(to_ours))
            assert done.returncode == 0, done.stderr + said()
            assert daemon.process.poll() is None, said()
            assert {p: (writer.read(p), writer.get_perms(p)) for p in PATHS} == back
            writer.write("/data/again", b"")
            assert watcher.read_watch(timeout=5) == ("/data/again", "before")
            assert shallow.read_watch(timeout=5) == ("/data/again", "shallow")
            writer.write("/data/again/deep", b"below the depth")
            writer.write("/data/near", b"")
            assert shallow.read_watch(timeout=5) == ("/data/near", "shallow")
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
