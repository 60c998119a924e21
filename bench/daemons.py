"""Start, pin and stop the daemons under test, and run child processes that can be stopped.

Every process started here is recorded and stopped by its pid, whatever happens
(Ctrl-C, SIGTERM, an error): :class:`Processes` is a context manager whose exit
stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from xenstore.testing import spawn
from xsref import launcher

#: The repository root (bench/..): put on PYTHONPATH so that `python -m xenstore.daemon`
#: runs this tree's code even when the package is not installed, whatever the interpreter.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Reference daemons: label -> launcher kind.
REFERENCE_KINDS = {"cxenstored": "c", "oxenstored": "o"}
_STOP_GRACE = 5.0


def short_tempdir() -> str:
    """A fresh directory short enough for a socket path (sun_path holds 107 bytes)."""
    return tempfile.mkdtemp(prefix="xsb", dir="/tmp")


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment, with this tree first on PYTHONPATH and no inherited XENSTORED_PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("XENSTORED_PATH", "XENSTORED_RUNDIR")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


@dataclass
class Daemon:
    """A running daemon under test: its label, socket, pid and a way to stop it."""

    label: str
    socket_path: str
    pid: int
    stop: Callable[[], None]
    describe: str = ""
    ready_seconds: float = 0.0


def start_ours(
    python: str, directory: str, timeout: float = 20.0, env: dict[str, str] | None = None
) -> Daemon:
    """Start pyxenstored on DIRECTORY/socket; return once it listens (xenstore.testing.spawn).

    ``env`` replaces :func:`python_env` (this tree first on PYTHONPATH), e.g. to run
    the package installed in ``python``'s environment instead.
    """
    spawned = spawn(
        os.path.join(directory, "socket"),
        stderr_path=os.path.join(directory, "stderr"),
        python=python,
        env=python_env() if env is None else env,
        new_session=True,  # a Ctrl-C for us does not reach it; we stop it ourselves
        timeout=timeout,
    )

    def stop() -> None:
        spawned.stop(_STOP_GRACE)

    return Daemon("ours", spawned.socket_path, spawned.pid, stop, f"pyxenstored ({python})",
                  spawned.ready_seconds)


def start_reference(label: str, directory: str) -> Daemon:
    """Start a reference daemon through xsref.launcher.

    Raises launcher.ReferenceUnavailable (with the reason) when this machine cannot run it.
    """
    kind = REFERENCE_KINDS[label]
    launcher.check_available(kind)
    t0 = time.monotonic()
    d = launcher.start(kind, directory)
    return Daemon(label, d.socket_path, d.pid, d.stop, launcher.KINDS[kind], time.monotonic() - t0)


class Processes(contextlib.ExitStack):
    """Everything to stop at the end, stopped in reverse order even on Ctrl-C or SIGTERM."""

    def __enter__(self) -> Processes:
        super().__enter__()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> bool:
        # No second Ctrl-C or SIGTERM while we stop things: a half-stopped daemon would leak.
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return bool(super().__exit__(*exc))  # type: ignore[arg-type]
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_child(
    argv: Sequence[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cpu: int | None = None,
    stderr_to: int | None = None,
) -> tuple[int, str, str]:
    """Run a command in its own process group; kill that group (by its pid) on timeout,
    Ctrl-C or error. Returns (exit status, stdout, stderr); status 124 on timeout.

    ``cpu`` pins the child to one CPU; ``stderr_to`` passes its stderr through
    (e.g. ``sys.stderr.fileno()`` for progress lines) instead of capturing it.
    """
    preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_to if stderr_to is not None else subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=preexec,  # safe: this program starts no threads
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), (err or b"").decode(errors="replace")
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        return 124, out.decode(errors="replace"), (err or b"").decode(errors="replace")
    except BaseException:
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: its pid is the group id
    proc.wait()


@contextlib.contextmanager
def pinned(pid: int, cpu: int | None) -> Iterator[None]:
    """Pin every thread of a process to one CPU for the duration; put its masks back after.

    On a VM a wake-up across CPUs can cost tens of microseconds, more than the daemon's
    own work, so the load generator and the daemon share one CPU during a measurement.
    """
    if cpu is None:
        yield
        return
    saved: dict[int, set[int]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(f"/proc/{pid}/task"):
            tid = int(name)
            with contextlib.suppress(OSError):
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {cpu})
    try:
        yield
    finally:
        for tid, mask in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, mask)


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: the daemons inherit it and 1000+ clients
    connect at once."""
    if sys.platform.startswith("linux"):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
