"""The one way to start our daemon as a child process and know when it listens.

:func:`spawn` runs ``python -m xenstore.daemon --socket PATH -P ARGS...`` and
returns once the daemon has printed its pid, which ``-P`` makes it do only
after its socket listens: readiness is awaited, never guessed with a sleep. A
daemon that exits, prints something else or stays silent past the deadline is
stopped and reported with what it wrote on stderr.

Everything that needs a daemon in a subprocess goes through here:
:mod:`xenstore.testing` (which offers it to users' tests), our own tests'
``OurDaemon``, the benchmarks and the soak (``bench/``) and ``pyxl lab``.
It imports neither trio nor pytest.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

__all__ = ["START_TIMEOUT", "STOP_TIMEOUT", "DaemonProcess", "spawn"]

#: How long a daemon may take to start listening before spawn() gives up.
START_TIMEOUT = 30.0
#: How long stop() waits after SIGTERM before it uses SIGKILL.
STOP_TIMEOUT = 10.0


class DaemonProcess:
    """A daemon started by :func:`spawn`: its process, where it listens, what it said."""

    def __init__(self, process: subprocess.Popen[bytes], socket_path: str,
                 stderr_path: str) -> None:
        #: The child (``process.poll()``, ``process.wait()``, ``process.returncode``).
        self.process = process
        #: Its process id: signal it by this.
        self.pid = process.pid
        #: Its Unix socket.
        self.socket_path = socket_path
        #: The file its stderr goes to.
        self.stderr_path = stderr_path
        #: Seconds from the start of :func:`spawn` until the daemon listened.
        self.ready_seconds = 0.0

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        """What the daemon has written on stderr so far ("" once the file is gone)."""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM (the daemon removes its socket and exits), SIGKILL after ``timeout``
        seconds; returns its exit status. Calling it again only returns the status."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __repr__(self) -> str:
        return f"<DaemonProcess pid {self.pid} on {self.socket_path}>"


def spawn(
    socket_path: str,
    args: Sequence[str] = (),
    *,
    stderr_path: str,
    python: str = sys.executable,
    module: str = "xenstore.daemon",
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    timeout: float = START_TIMEOUT,
) -> DaemonProcess:
    """Start ``python -m module --socket socket_path -P *args``; return once it listens.

    Its stderr is appended to ``stderr_path`` (a pipe that nobody drains
    could stall a chatty daemon). ``env`` replaces the environment;
    ``new_session`` puts the daemon in a session of its own, so that a
    Ctrl-C at the terminal reaches only the caller (which then stops it).
    ``module`` runs another entry point with the daemon's flags (a test's
    daemon with a planted fault, say). RuntimeError, with what the daemon
    said, when it does not start within ``timeout`` seconds.
    """
    started = time.monotonic()
    with open(stderr_path, "ab") as stderr:
        process = subprocess.Popen(
            [python, "-m", module, "--socket", socket_path, "-P", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=None if env is None else dict(env), start_new_session=new_session,
        )
    daemon = DaemonProcess(process, socket_path, stderr_path)
    try:
        line = _read_line(process, started + timeout)
    except BaseException:  # Ctrl-C while it starts: never leave it behind
        daemon.stop()
        raise
    if line.strip() != str(process.pid).encode():
        late = process.poll() is None and not line.endswith(b"\n")
        daemon.stop()
        said = daemon.stderr()[-2000:].strip() or "(no message)"
        raise RuntimeError(
            f"the daemon did not start{f' within {timeout:g} s' if late else ''}: {said}"
        )
    daemon.ready_seconds = time.monotonic() - started
    return daemon


def _read_line(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    """The first line of the child's stdout; what came before EOF or the deadline if none."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return line
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 1)  # one byte: what follows the line is not ours
            if not chunk:
                return line  # it exited
            line += chunk
    return line
