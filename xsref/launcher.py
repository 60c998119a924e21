"""Start and stop the reference XenStore daemons on a host without Xen.

Three problems stand between Debian's stock ``xenstored``/``oxenstored`` and a
plain Linux machine, and each has its answer here:

* **No hypervisor.** At start-up the daemons open libxenctrl, the event channel
  and grant table libraries, and dom0's xenbus files under ``/proc/xen``, and
  exit when any of that fails. ``shim.c`` (next to this module) defines those
  entry points itself; we build it once with gcc and load it into the daemon
  with ``LD_PRELOAD``. The build is cached under the system temporary
  directory, named by a hash of the source and flags, and published by an
  atomic rename so that concurrent test runs never load a half-written file.

* **A fixed socket path.** Both daemons listen on
  ``/var/run/xenstored/socket`` (oxenstored has no way to change it). Each
  daemon therefore runs under ``unshare --mount``: in its private mount
  namespace the caller's directory is bind-mounted over ``/var/run/xenstored``,
  so the socket appears as ``DIRECTORY/socket`` to everybody else, and any
  number of daemons can run side by side without touching the real
  ``/var/run/xenstored``. This needs root.

* **Knowing when it is up.** ``start`` returns only once the daemon will
  answer, without sleeping and retrying: cxenstored's ``-P`` prints its pid on
  stdout after its socket listens and dom0 is set up, just before its main
  loop, so we wait for that line. oxenstored has nothing like it (its version
  banner comes before dom0 is set up, and this build sends no systemd
  notification), so the shim reports instead: given
  ``XENSTORE_REFERENCE_READY_FD``, it writes a line to that pipe the first time
  the daemon waits for events, i.e. when it enters its main loop. In both
  cases the daemon dying closes the pipe, so a failure is seen at once, and a
  deadline bounds the wait.

Nothing survives a run: the daemons run in the foreground (``-N`` /
``--no-fork``), cxenstored keeps its database in memory, oxenstored gets a
configuration file with persistence off, and the private state directory
(``DIRECTORY/.reference-state``: configuration, pid file, logs, the daemon's
stdout and stderr, and the files through which another process can play a
guest, see :mod:`xsref.guest`) is recreated at every start. What
the daemon leaves in its run directory (the socket, oxenstored's shutdown
dump ``db``) is removed when it stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Final

from xenstore.client import Client
from xenstore.sockets import SUN_PATH_MAX
from xsref.guest import GuestRing

#: Where Debian's xen-utils-4.17 installs the daemons.
XEN_BIN_DIR: Final = "/usr/lib/xen-4.17/bin"
#: The kinds of reference daemon: "c" for cxenstored, "o" for oxenstored.
KINDS: Final[dict[str, str]] = {
    "c": os.path.join(XEN_BIN_DIR, "xenstored"),
    "o": os.path.join(XEN_BIN_DIR, "oxenstored"),
}
_NAMES: Final = {"c": "cxenstored", "o": "oxenstored"}
#: The run directory compiled into both daemons.
RUNDIR: Final = "/var/run/xenstored"
#: Name of the per-instance state directory inside the caller's directory.
STATE_DIRNAME: Final = ".reference-state"
#: Environment variables understood by shim.c.
STATE_DIR_ENV: Final = "XENSTORE_REFERENCE_STATE_DIR"
READY_FD_ENV: Final = "XENSTORE_REFERENCE_READY_FD"

_GCC_FLAGS: Final = ("-shared", "-fPIC", "-O2", "-Wall", "-fvisibility=hidden")
#: How long stop() waits after SIGTERM before it uses SIGKILL.
_STOP_GRACE: Final = 5.0
#: Variables that would make cxenstored listen somewhere else than its
#: run directory (it reads them like its clients do), or that we set ourselves.
_SCRUBBED_ENV: Final = ("XENSTORED_PATH", "XENSTORED_RUNDIR", "LD_PRELOAD", READY_FD_ENV)

# Inside the new mount namespace: put the directory ($1) over the run
# directory, preload the shim ($2) into the daemon only (not into mount or the
# shell), and replace the shell with the daemon so that it keeps our child's
# pid. Exit status 125 tells a failed bind mount from a daemon's own failure.
_NAMESPACE_SCRIPT: Final = (
    'mount --bind "$1" ' + RUNDIR + " || exit 125\n"
    'LD_PRELOAD="$2"\n'
    "export LD_PRELOAD\n"
    "shift 2\n"
    'exec "$@"\n'
)

# oxenstored takes its settings from a file. Paths point into the state
# directory or at the xenbus files the shim provides (the two xenstored-*
# paths have no compiled-in default: without them it opens ""); the limits
# are those of the oxenstored.conf that Debian installs, so that the daemon
# behaves as on a stock dom0 rather than with the compiled-in defaults.
_OXENSTORED_CONF: Final = """\
# oxenstored settings for one run under xsref; rewritten each start.
pid-file = {state}/oxenstored.pid
persistent = false
xenstored-log-file = {state}/oxenstored.log
access-log-file = {state}/oxenstored-access.log
xenstored-kva = /proc/xen/xsd_kva
xenstored-port = /proc/xen/xsd_port
test-eagain = false
merge-activate = true
conflict-burst-limit = 5.0
conflict-max-history-seconds = 0.05
conflict-rate-limit-is-aggregate = true
perms-activate = true
perms-watch-activate = true
quota-activate = true
quota-maxentity = 1000
quota-maxsize = 2048
quota-maxwatch = 100
quota-transaction = 10
quota-maxrequests = 1024
quota-path-max = 1024
quota-maxoutstanding = 1024
quota-maxwatchevents = 1024
"""


class ReferenceUnavailable(Exception):
    """This machine cannot run a reference daemon; the message says why and what to do."""


class ReferenceStartError(RuntimeError):
    """A reference daemon was started but did not come up; the message holds its stderr."""


def _binary(kind: str) -> str:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown reference daemon kind {kind!r}: use 'c' or 'o'") from None


# -- availability ------------------------------------------------------------

_namespaces_work = False


def _check_mount_namespaces() -> None:
    """Try ``unshare --mount`` once per process; containers may forbid it."""
    global _namespaces_work
    if _namespaces_work:
        return
    try:
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReferenceUnavailable(f"cannot run unshare --mount: {exc}") from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()
        raise ReferenceUnavailable(
            "cannot create a private mount namespace (unshare --mount failed: "
            f"{detail or 'exit status ' + str(result.returncode)}); "
            "it needs root with CAP_SYS_ADMIN"
        )
    _namespaces_work = True


def check_available(kind: str) -> None:
    """Raise :class:`ReferenceUnavailable` unless a daemon of ``kind`` can be started here.

    ``kind`` is "c" (cxenstored) or "o" (oxenstored); anything else is a
    ``ValueError``. This also builds the shim if it is not cached yet, so a
    machine that passes can run :func:`start`.
    """
    binary = _binary(kind)
    if not sys.platform.startswith("linux"):
        raise ReferenceUnavailable("the reference daemons need Linux (mount namespaces)")
    if os.geteuid() != 0:
        raise ReferenceUnavailable(
            "the reference daemons need root: each runs in its own mount namespace "
            f"with its directory bind-mounted over {RUNDIR}"
        )
    if not os.access(binary, os.X_OK):
        raise ReferenceUnavailable(
            f"{binary} is missing: install xen-utils-4.17 "
            "(apt-get install xen-utils-4.17, Debian 12)"
        )
    for tool, package in (("unshare", "util-linux"), ("mount", "mount"), ("sh", "dash")):
        if shutil.which(tool) is None:
            raise ReferenceUnavailable(f"{tool} is missing: install {package}")
    shim_library()
    _check_mount_namespaces()


# -- the shim ------------------------------------------------------------------


def _cache_dir() -> str:
    """A directory for built shims that only we can write to.

    The shim is loaded into programs run as root, so a directory that another
    user could have created or could write to in the shared temporary
    directory must not be trusted.
    """
    path = os.path.join(tempfile.gettempdir(), f"xenstore-reference-{os.geteuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise ReferenceUnavailable(
            f"{path} is not a private directory of this user; remove it and retry"
        )
    return path


def shim_library() -> str:
    """Return the path of the built shim, building it first if needed."""
    source = importlib.resources.files(__package__).joinpath("shim.c").read_bytes()
    digest = hashlib.sha256(source + "\0".join(_GCC_FLAGS).encode()).hexdigest()[:20]
    cache = _cache_dir()
    target = os.path.join(cache, f"shim-{digest}.so")
    if os.path.isfile(target):
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ReferenceUnavailable(
            "gcc is missing (needed once, to build the hypervisor shim): install gcc"
        )
    fd, partial = tempfile.mkstemp(prefix=".building-", suffix=".so", dir=cache)
    os.close(fd)
    try:
        # The source goes in on stdin, so the package need not be a real directory.
        result = subprocess.run(
            [gcc, *_GCC_FLAGS, "-o", partial, "-x", "c", "-", "-ldl"],
            input=source,
            capture_output=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ReferenceUnavailable(
                "gcc could not build the hypervisor shim (are the C library headers, "
                "libc6-dev, installed?):\n" + result.stderr.decode(errors="replace")
            )
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


# -- running a daemon ----------------------------------------------------------


class ReferenceDaemon:
    """A running reference daemon; :meth:`stop` it, or use it as a context manager."""

    def __init__(
        self,
        kind: str,
        directory: str,
        process: subprocess.Popen[bytes],
    ) -> None:
        self.kind = kind
        self.name = _NAMES[kind]
        self.directory = directory
        self.socket_path = os.path.join(directory, "socket")
        #: The shim's state: logs, and for guests each introduced domain's
        #: ``ring-<domid>`` and ``port-<domid>`` and the ``evtchn`` FIFO
        #: (see :mod:`xsref.guest`).
        self.state_dir = os.path.join(directory, STATE_DIRNAME)
        self.stderr_path = os.path.join(self.state_dir, "stderr")
        self.pid = process.pid
        self._process = process

    def __repr__(self) -> str:
        return f"<ReferenceDaemon {self.name} pid={self.pid} socket={self.socket_path!r}>"

    @property
    def returncode(self) -> int | None:
        """The exit status once the daemon has ended (negative: killed by that signal)."""
        return self._process.poll()

    def running(self) -> bool:
        return self._process.poll() is None

    def stderr_text(self, limit: int = 8000) -> str:
        """The last ``limit`` characters the daemon (or the mount before it) wrote to stderr."""
        try:
            with open(self.stderr_path, "rb") as log:
                data = log.read()
        except OSError:
            return ""
        return data[-limit:].decode(errors="replace")

    def stop(self, timeout: float = _STOP_GRACE) -> None:
        """Send SIGTERM to the daemon's pid and wait for it; SIGKILL after ``timeout``.

        Safe to call more than once. Removes what the daemon leaves behind in
        the directory (its socket, oxenstored's shutdown dump).
        """
        if self._process.poll() is None:
            # Popen.send_signal is os.kill(self.pid, ...), skipped if the
            # process has already been reaped, so a reused pid is never hit.
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        _remove_leftovers(self.directory)

    def guest(self, domid: int, timeout: float = 5.0) -> Client:
        """A :class:`~xenstore.client.Client` that is domain ``domid``, over its ring.

        It does nothing but connect: dom0 must have introduced the domain
        already (:func:`xsref.guest.introduce` on a socket
        client), and should have given it a home first, as a toolstack does::

            with Client(daemon.socket_path) as dom0:
                dom0.write("/local/domain/5", "")
                dom0.set_perms("/local/domain/5", ["n5", "r0"])
                introduce(dom0, 5)
            with daemon.guest(5) as guest:
                guest.write("name", "five")      # /local/domain/5/name

        Every wait on the ring gives up after ``timeout`` seconds
        (:class:`TimeoutError`); after RELEASE the client's requests fail with
        :class:`ConnectionResetError`. Both kinds of daemon serve guests this
        way. Raises :class:`FileNotFoundError` if the domain is not introduced.
        """
        ring = GuestRing(self.state_dir, domid, timeout)
        return Client(ring.ring_path, stream=ring)

    def __enter__(self) -> ReferenceDaemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _remove_leftovers(directory: str) -> None:
    """Remove what a daemon leaves in its run directory: its socket and oxenstored's dump."""
    for name in ("socket", "db"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))


def _read_line(fd: int, deadline: float) -> bytes | None:
    """Read up to a newline from ``fd``; None at end of file; TimeoutError at ``deadline``."""
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if not poller.poll(remaining * 1000):
            continue  # the loop re-checks the deadline
        chunk = os.read(fd, 256)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0]


def _prepare_directory(directory: str) -> str:
    """Make a fresh state directory and clear the last run's leftovers; return its path."""
    os.makedirs(directory, exist_ok=True)
    _remove_leftovers(directory)
    state_dir = os.path.join(directory, STATE_DIRNAME)
    shutil.rmtree(state_dir, ignore_errors=True)
    os.mkdir(state_dir, 0o700)
    return state_dir


def start(
    kind: str,
    directory: str,
    extra_args: Sequence[str] = (),
    *,
    timeout: float = 10.0,
) -> ReferenceDaemon:
    """Start a reference daemon serving ``directory/socket``; return once it accepts clients.

    ``kind`` is "c" (cxenstored) or "o" (oxenstored). ``directory`` is created
    if needed and should be short: a Unix socket path holds at most 107
    bytes. ``extra_args`` are appended to the daemon's command line (quotas,
    for instance; note that cxenstored only warns on stderr about an option it
    does not know, and carries on). Raises :class:`ReferenceUnavailable` if the machine cannot
    run it, and :class:`ReferenceStartError` (after killing it) if the daemon
    exits or is not ready within ``timeout`` seconds.
    """
    binary = _binary(kind)
    directory = os.path.abspath(directory)
    socket_path = os.path.join(directory, "socket")
    if len(os.fsencode(socket_path)) > SUN_PATH_MAX:
        raise ValueError(
            f"{socket_path} is longer than the {SUN_PATH_MAX} bytes a Unix socket path may have; "
            "use a shorter directory"
        )
    check_available(kind)
    shim = shim_library()
    state_dir = _prepare_directory(directory)
    # The daemon mounts over this path, so it has to exist; a machine that has
    # never run Xen has no such directory.
    os.makedirs(RUNDIR, mode=0o755, exist_ok=True)

    env = {name: value for name, value in os.environ.items() if name not in _SCRUBBED_ENV}
    env[STATE_DIR_ENV] = state_dir
    ready_read = ready_write = -1
    pass_fds: tuple[int, ...] = ()
    if kind == "c":
        # -N: stay in the foreground; -P: print the pid once ready (see above).
        daemon_argv = [binary, "-N", "-P", *extra_args]
        stdout: int = subprocess.PIPE
    else:
        conf_path = os.path.join(state_dir, "oxenstored.conf")
        with open(conf_path, "w") as conf:
            conf.write(_OXENSTORED_CONF.format(state=state_dir))
        daemon_argv = [binary, "--no-fork", "--config-file", conf_path, *extra_args]
        ready_read, ready_write = os.pipe()
        env[READY_FD_ENV] = str(ready_write)
        pass_fds = (ready_write,)
        stdout = os.open(os.path.join(state_dir, "stdout"), os.O_WRONLY | os.O_CREAT, 0o600)

    stderr = os.open(os.path.join(state_dir, "stderr"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                _NAMESPACE_SCRIPT,
                "sh",
                directory,
                shim,
                *daemon_argv,
            ],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
            pass_fds=pass_fds,
            # Its own session: a Ctrl-C meant for us does not reach the daemon,
            # which we stop in order instead.
            start_new_session=True,
        )
    except BaseException:
        for fd in (ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        os.close(stderr)
        if stdout != subprocess.PIPE:
            os.close(stdout)
    daemon = ReferenceDaemon(kind, directory, process)

    try:
        deadline = time.monotonic() + timeout
        if kind == "c":
            assert process.stdout is not None
            with process.stdout:
                line = _read_line(process.stdout.fileno(), deadline)
            # Anything cxenstored prints later fails with EPIPE, which it ignores.
            expected = str(process.pid).encode()
        else:
            os.close(ready_write)  # so that the daemon's exit reads as end of file
            ready_write = -1
            try:
                line = _read_line(ready_read, deadline)
            finally:
                os.close(ready_read)
            expected = b"ready"
    except TimeoutError:
        daemon.stop(timeout=1.0)
        raise ReferenceStartError(
            f"{daemon.name} did not become ready within {timeout:g} s; its stderr:\n"
            + daemon.stderr_text()
        ) from None
    except BaseException:
        daemon.stop(timeout=1.0)
        raise
    if line != expected:
        if line is None:
            # End of file: the daemon is exiting; give it a moment to finish.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1.0)
            what = _describe_exit(process.poll())
        else:
            what = f"said {line!r} instead of {expected!r}"
        daemon.stop(timeout=1.0)
        raise ReferenceStartError(
            f"{daemon.name} did not start: it {what}; its stderr:\n" + daemon.stderr_text()
        )
    return daemon


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "closed its readiness pipe"
    if status == 125:
        return f"failed to bind-mount its directory over {RUNDIR} (exit status 125)"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


__all__ = [
    "KINDS",
    "RUNDIR",
    "ReferenceDaemon",
    "ReferenceStartError",
    "ReferenceUnavailable",
    "check_available",
    "shim_library",
    "start",
]
