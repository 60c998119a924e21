"""What the live-update tests share: the wrappers a live update execs, Xen's
``xenstore-control live-update``, and our daemon started with a run directory.

A wrapper into ours drops the launcher's shim (``LD_PRELOAD``: ours has no use
for it) and execs ``python -m xenstore.daemon`` with the arguments it is given
(cxenstored passes its own plus ``-U``) and ``-V``, so the log says what was
adopted. A wrapper into cxenstored sets up what ``python -m xsref c`` gives it:
the shim and a state directory of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import short_tempdir
from xenstore.daemon.spawn import DaemonProcess, spawn
from xenstore.protocol.codec import Framer, Packet
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


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o700)
    return path


def to_ours(directory: str | Path) -> Path:
    """A wrapper into our daemon, written in ``directory``."""
    return _script(Path(directory) / "to-ours.sh", TO_OURS)


def to_c(directory: str | Path) -> Path:
    """A wrapper into cxenstored (with a fresh state directory), written in ``directory``."""
    state = Path(directory) / "state"
    state.mkdir()
    return _script(Path(directory) / "to-c.sh", TO_C.format(
        shim=launcher.shim_library(), state_env=launcher.STATE_DIR_ENV, state=state,
        binary=launcher.KINDS["c"]))


def control(socket_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``xenstore-control live-update ARGS`` sent to the daemon at ``socket_path``."""
    env = {**os.environ, "XENSTORED_PATH": socket_path}
    return subprocess.run([CONTROL, "live-update", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def live_update(socket_path: str, wrapper: str | Path, alive: Callable[[], bool],
                said: Callable[[], str]) -> None:
    """Live-update the daemon at ``socket_path`` through ``wrapper`` into ours: it must
    succeed, the process go on and our daemon say it adopted the state."""
    done = control(socket_path, str(wrapper))
    assert done.returncode == 0, done.stderr + said()
    assert alive(), said()
    assert "live update: adopted" in said()


def comm(pid: int) -> str:
    """The name the kernel gives process ``pid`` (``python...`` or ``xenstored``)."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def events(sock: socket.socket, framer: Framer, count: int, timeout: float) -> list[Packet]:
    """The next ``count`` packets read from ``sock``."""
    got: list[Packet] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {count} packets arrived"
        sock.settimeout(left)
        data = sock.recv(65536)
        assert data, f"the connection closed after {len(got)} of {count} packets"
        got.extend(framer.feed(data))
    return got


@dataclass
class Ours:
    """Our daemon with a run directory: its socket, the wrappers into C and into ours."""

    directory: Path
    socket_path: str
    to_c: Path
    to_ours: Path
    daemon: DaemonProcess

    def said(self) -> str:
        """What it logged (across live updates: the same stderr)."""
        return (self.directory / "stderr").read_text()

    def alive(self) -> bool:
        return self.daemon.process.poll() is None

    def update(self, *args: str) -> None:
        """``xenstore-control live-update ARGS``: it must succeed, the process going on."""
        done = control(self.socket_path, *args)
        assert done.returncode == 0, done.stderr + self.said()
        assert self.alive(), self.said()

    def into_ours(self) -> None:
        """Live-update it into ours, through its own wrapper."""
        live_update(self.socket_path, self.to_ours, self.alive, self.said)


@contextlib.contextmanager
def our_daemon(prefix: str = "xslu") -> Iterator[Ours]:
    """Our daemon (``-N``) writing its state dump in a run directory of its own."""
    directory = Path(short_tempdir(prefix))
    socket_path = str(directory / "socket")
    wrapper_c, wrapper_ours = to_c(directory), to_ours(directory)
    env = {**os.environ, "XENSTORED_RUNDIR": str(directory)}
    env.pop("LD_PRELOAD", None)
    daemon = spawn(socket_path, ["-N"], stderr_path=str(directory / "stderr"), env=env)
    try:
        yield Ours(directory, socket_path, wrapper_c, wrapper_ours, daemon)
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
