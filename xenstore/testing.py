"""A throwaway XenStore daemon for your own tests, and a pytest plugin serving it.

With the context manager::

    from xenstore.testing import xenstored

    with xenstored() as daemon, daemon.client() as xs:
        xs.write("/vm/name", "guest")

or, under pytest, with the fixtures this module registers (the package
declares it as a ``pytest11`` plugin, so installing ``xenstore`` is enough):

* ``xenstored``: a fresh :class:`TestDaemon` for the test; ``$XENSTORED_PATH``
  points at it meanwhile, so code under test that connects the default way
  (:class:`~xenstore.client.Client`, the ``xenstore-*`` tools, libxenstore)
  finds it. ``@pytest.mark.xenstored(in_process=True, args=[...])`` changes
  how it starts.
* ``xs``: a :class:`~xenstore.client.Client` connected to it.

Each daemon gets its own short socket path in a fresh directory under /tmp
(a Unix socket address holds at most 107 bytes, which pytest's ``tmp_path``
easily exceeds), removed when the daemon stops. Readiness is awaited, never
guessed with a sleep: a subprocess daemon prints its pid once its socket
listens (``-P``), an in-process one reports from ``nursery.start()``.

Faults for the code under test to survive: a test daemon runs with
``--faults`` (unless started with ``faults=False``), and ``daemon.faults``
arms them, each through one CONTROL ``fault`` request (so alike for a
subprocess and an in-process daemon; see :mod:`xenstore.daemon.faults` for
where each bites)::

    def test_my_driver_retries(xenstored, xs):
        xenstored.faults.eagain(3)            # the next 3 commits fail with EAGAIN
        xenstored.faults.write_errno("/local/domain/0/backend", "EACCES")
        xenstored.faults.event_delay(0.25)    # watch events come 0.25 s late, in order
        ...
        xenstored.faults.clear()

Guests, for testing split drivers: a daemon started with ``guests=True``
(``@pytest.mark.xenstored(guests=True)``) listens for each introduced domain
on a socket of its own, and :func:`guest_domain` plays Xen's toolstack: it
creates a domain with its devices as libxl lays them out, and destroys it
after (:mod:`xenstore.xenbus.toolstack`)::

    @pytest.mark.xenstored(guests=True)
    async def test_my_frontend(xenstored):
        async with guest_domain(xenstored, 5, disks=[DiskSpec("xvda", "/img")]) as guest:
            async with open_client(guest.socket_path) as xs:     # acts as domain 5
                await xs.read(guest.disks[0].frontend / "backend")

A daemon process on your own terms (your socket path and directory, another
interpreter, your own lifetime): :func:`spawn` is the one way this package
starts ``python -m xenstore.daemon`` as a subprocess, and it returns once the
daemon listens (:mod:`xenstore.daemon.spawn`)::

    daemon = spawn("/tmp/xs/socket", ["--domain-dir", "/tmp/xs"], stderr_path="/tmp/xs/log")
    ...
    daemon.stop()

Neither trio nor pytest is needed to import this module: trio is imported
only for an in-process daemon or a guest, and the fixtures are defined only
where pytest is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xenstore import errors
from xenstore.client import Client
from xenstore.daemon.spawn import START_TIMEOUT, STOP_TIMEOUT, DaemonProcess, spawn

if TYPE_CHECKING:
    import socket

    import trio

    from xenstore.daemon.shell import Shell
    from xenstore.xenbus.paths import DeviceAddress
    from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec
    from xenstore.xenbus.toolstack import Toolstack

__all__ = [
    "CLIENT_TIMEOUT", "START_TIMEOUT", "DaemonProcess", "FaultInjector", "Guest", "TestDaemon",
    "guest_domain", "spawn", "start", "xenstored",
]
#: The timeout of the ``xs`` fixture's client: a test waiting for a watch
#: event that never comes fails with TimeoutError instead of hanging.
CLIENT_TIMEOUT = 30.0


def _short_directory() -> str:
    # /tmp rather than $TMPDIR: the latter may be deep enough to break sun_path.
    base = "/tmp" if os.path.isdir("/tmp") else None
    return tempfile.mkdtemp(prefix="xs", dir=base)


class FaultInjector:
    """Arms faults in a test daemon (CONTROL ``fault``): ``daemon.faults``.

    Each call sends one CONTROL request on a fresh dom0 connection. A daemon
    started with ``faults=False`` (no ``--faults``) refuses: RuntimeError.
    """

    __slots__ = ("_socket_path",)

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path

    def eagain(self, commits: int, domid: int | None = None) -> None:
        """Refuse the next ``commits`` transaction commits with EAGAIN, as a conflict
        would (of domain ``domid``'s connections only, if given; 0 disarms)."""
        self._fault("eagain", str(commits), *(() if domid is None else (str(domid),)))

    def write_errno(self, path: str, errno: str | type[errors.XenStoreError] | None) -> None:
        """Fail WRITE, MKDIR, RM and SET_PERMS at or below ``path`` with ``errno``
        (``"EACCES"`` or ``errors.EACCES``); None disarms it."""
        name = "off" if errno is None else errno if isinstance(errno, str) else errno.name
        self._fault("write-errno", path, name)

    def event_delay(self, seconds: float) -> None:
        """Deliver watch events ``seconds`` late from now on (replies are not held)."""
        self._fault("event-delay", repr(float(seconds)))

    def clear(self) -> None:
        """Disarm every fault."""
        self._fault("clear")

    def armed(self) -> list[str]:
        """What is armed, one ``fault`` command line each (``["eagain 2"]``)."""
        return self._fault().rstrip(b"\0").decode().splitlines()

    def _fault(self, *args: str) -> bytes:
        with Client(self._socket_path, timeout=CLIENT_TIMEOUT) as xs:
            try:
                return xs.control("fault", *args)
            except errors.EACCES:
                raise RuntimeError(
                    "this daemon refuses faults: start it with faults=True (pyxenstored --faults)"
                ) from None


class TestDaemon:
    """A running daemon: where it listens, how to talk to it, how to stop it."""

    # Not a test class, whatever its name says (pytest collects Test*).
    __test__ = False

    def __init__(self, directory: str) -> None:
        #: The daemon's own directory (under /tmp), removed by :meth:`stop`.
        self.directory = directory
        #: The daemon's Unix socket.
        self.socket_path = os.path.join(directory, "socket")
        #: The daemon's process id (None for an in-process daemon).
        self.pid: int | None = None
        #: Arms failures for the code under test (needs a daemon started with faults).
        self.faults = FaultInjector(self.socket_path)
        #: Where guests' sockets appear (``--domain-dir``), for a daemon started
        #: with ``guests=True``; else None.
        self.domain_dir: str | None = None

    def guest_socket(self, domid: int) -> str:
        """The socket that acts as domain ``domid`` once it is introduced."""
        if self.domain_dir is None:
            raise ValueError("this daemon has no guest sockets: start it with guests=True")
        return os.path.join(self.domain_dir, str(domid))

    def client(self, timeout: float | None = None) -> Client:
        """A new blocking client connected to the daemon (close it, or use ``with``)."""
        return Client(self.socket_path, timeout=timeout)

    def stop(self) -> None:
        """Stop the daemon and remove its directory; calling it again does nothing."""
        try:
            self._stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _stop(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.socket_path}>"


class _ProcessDaemon(TestDaemon):
    """``python -m xenstore.daemon`` in a subprocess (:func:`spawn`, the one way to start it)."""

    def __init__(self, directory: str, args: Sequence[str]) -> None:
        super().__init__(directory)
        stderr_path = os.path.join(directory, "stderr")
        self._process: DaemonProcess = spawn(self.socket_path, args, stderr_path=stderr_path)
        self.pid = self._process.pid

    def _stop(self) -> None:
        self._process.stop()


class _ThreadDaemon(TestDaemon):
    """The daemon's trio shell under ``trio.run`` in a background thread of this process."""

    def __init__(self, directory: str, args: Sequence[str]) -> None:
        super().__init__(directory)
        from xenstore.daemon.shell import bind_unix

        shell = _make_shell(self.socket_path, args)
        listener = bind_unix(self.socket_path, shell.options.socket_mode)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(shell, listener), name=f"xenstored {self.socket_path}"
        )
        self._thread.daemon = True  # never keep the interpreter alive
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self._stop()
            raise RuntimeError("the in-process daemon did not start")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"the in-process daemon did not start: {self._error!r}")

    def _run(self, shell: Shell, listener: socket.socket) -> None:
        import trio

        try:
            trio.run(self._serve, shell, listener)
        except BaseException as exc:  # reported by __init__, or else by stop()
            self._error = exc
        finally:
            self._ready.set()
            if shell.tracer is not None:
                shell.tracer.close()

    async def _serve(self, shell: Shell, listener: socket.socket) -> None:
        import trio

        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(shell.serve, listener)
                from xenstore.daemon.assemble import listen_restored
                listen_restored(shell)  # the domains of a --restore
                self._ready.set()
                await trio.sleep_forever()

    def _stop(self) -> None:
        import trio

        token, scope = self._token, self._scope
        if token is not None and scope is not None and self._thread.is_alive():
            # Cancelling unwinds Shell.serve, which closes every connection
            # and removes the socket.
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(scope.cancel, trio_token=token)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the in-process daemon did not stop")
        error, self._error = self._error, None
        if error is not None:  # the shell crashed while serving: say so, once
            raise RuntimeError(f"the in-process daemon failed: {error!r}") from error


def _make_shell(socket_path: str, args: Sequence[str]) -> Shell:
    """The daemon's Shell and Server as ``pyxenstored`` assembles them from ``args``.

    Flags about the process (``-P``, ``-F``, ``-V``...) mean nothing in-process
    and are ignored; a flag the daemon does not know raises ValueError.
    """
    from xenstore.daemon import assemble, options

    try:
        parsed = options.parse(["--socket", socket_path, *args])
    except SystemExit:  # argparse has printed why on stderr
        raise ValueError(f"bad daemon arguments: {list(args)}") from None
    return assemble.build_shell(parsed, assemble.build_server(parsed)[0])


def start(
    *, in_process: bool = False, args: Sequence[str] = (), faults: bool = True,
    guests: bool = False, restore: str | None = None,
) -> TestDaemon:
    """Start a daemon on a fresh socket and return once it accepts connections.

    ``args`` are more of ``pyxenstored``'s flags (``-M 100``, ``-T FILE``...),
    but not ``--socket``. ``faults``: run it with ``--faults``, so that
    :attr:`TestDaemon.faults` can arm failures. ``guests``: run it with
    ``--domain-dir`` (its own directory), so that an introduced domain's
    socket appears there (:meth:`TestDaemon.guest_socket`, :func:`guest_domain`).
    ``restore``: a snapshot file (CONTROL snapshot) to start from (``--restore``).
    The caller must :meth:`~TestDaemon.stop` it; :func:`xenstored` does that for you.
    """
    if faults:
        args = ["--faults", *args]
    directory = _short_directory()
    if guests:
        args = [*args, "--domain-dir", directory]
    if restore is not None:
        args = [*args, "--restore", restore]
    try:
        daemon: TestDaemon = (_ThreadDaemon if in_process else _ProcessDaemon)(directory, args)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    daemon.domain_dir = directory if guests else None
    return daemon


@contextmanager
def xenstored(
    *, in_process: bool = False, args: Sequence[str] = (), faults: bool = True,
    guests: bool = False, restore: str | None = None,
) -> Iterator[TestDaemon]:
    """A daemon for the duration of the ``with`` block, stopped and cleaned up after.

    By default it runs as a subprocess (``python -m xenstore.daemon``), so the
    test and the daemon share nothing; ``in_process=True`` runs it in a thread
    of this process instead (faster to start, and its state is inspectable).
    ``faults=False`` starts it without ``--faults``, as a production daemon;
    ``guests=True`` with guest sockets (see :func:`start`).
    """
    daemon = start(in_process=in_process, args=args, faults=faults, guests=guests,
                   restore=restore)
    try:
        yield daemon
    finally:
        daemon.stop()


# -- guests ---------------------------------------------------------------------------


@dataclass
class Guest:
    """A domain made by :func:`guest_domain`: where to connect as it, and its devices."""

    domid: int
    #: Its home, ``/local/domain/<domid>``.
    home: str
    #: Connect here to act as the guest (unprivileged, relative paths, ACLs).
    socket_path: str
    disks: list[DeviceAddress]
    nics: list[DeviceAddress]
    consoles: list[DeviceAddress]
    #: The toolstack that made it, over dom0's connection: to add or remove
    #: devices during the test (``await guest.toolstack.remove_device(...)``).
    toolstack: Toolstack

    @property
    def devices(self) -> list[DeviceAddress]:
        return [*self.disks, *self.nics, *self.consoles]


@asynccontextmanager
async def guest_domain(
    daemon: TestDaemon,
    domain: DomainSpec | int,
    *,
    disks: Sequence[DiskSpec] = (),
    nics: Sequence[NicSpec] = (),
    consoles: Sequence[ConsoleSpec] = (),
    wait: float = 1.0,
) -> AsyncIterator[Guest]:
    """Play the toolstack (trio): a domain with these devices for the ``async with`` block.

    ``daemon`` must have been started with ``guests=True``; ``domain`` is a
    :class:`~xenstore.xenbus.specs.DomainSpec` or a domid (named ``guest<D>``).
    The domain is created and introduced (its socket is there on entry), then
    the devices added, each end in state Initialising. On exit the domain is
    destroyed as ``xl destroy`` does: each backend is asked to close its
    device and given ``wait`` seconds, after which the device goes anyway;
    then nothing of the domain is left, nor its socket.
    """
    import trio

    from xenstore.aclient import open_client
    from xenstore.xenbus.specs import DomainSpec
    from xenstore.xenbus.toolstack import Toolstack

    spec = domain if isinstance(domain, DomainSpec) else DomainSpec(domain, f"guest{domain}")
    socket_path = daemon.guest_socket(spec.domid)
    async with open_client(daemon.socket_path) as xs:
        toolstack = Toolstack(xs)
        await toolstack.init_dom0()
        home = await toolstack.create_domain(spec)
        try:
            guest = Guest(spec.domid, home, socket_path, [], [], [], toolstack)
            for disk in disks:
                guest.disks.append(await toolstack.add_disk(spec.domid, disk))
            for nic in nics:
                guest.nics.append(await toolstack.add_nic(spec.domid, nic))
            for console in consoles:
                guest.consoles.append(await toolstack.add_console(spec.domid, console))
            yield guest
        finally:
            # Shielded, so that a cancelled test still leaves nothing behind.
            with trio.CancelScope(shield=True):
                await toolstack.destroy_domain(spec.domid, wait)


# -- the pytest plugin ---------------------------------------------------------------

try:
    import pytest
except ImportError:  # the context manager above works without pytest
    pass
else:

    def pytest_configure(config: pytest.Config) -> None:
        """Declare the ``xenstored`` marker."""
        config.addinivalue_line(
            "markers",
            "xenstored(in_process=False, args=(), faults=True, guests=False): how the "
            "xenstored fixture starts its daemon",
        )

    @pytest.fixture(name="xenstored")
    def _xenstored_fixture(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[TestDaemon]:
        """A fresh daemon for this test; ``$XENSTORED_PATH`` points at it meanwhile."""
        marker = request.node.get_closest_marker("xenstored")
        kwargs = dict(marker.kwargs) if marker is not None else {}
        with xenstored(**kwargs) as daemon:
            monkeypatch.setenv("XENSTORED_PATH", daemon.socket_path)
            yield daemon

    @pytest.fixture(name="xs")
    def _xs_fixture(xenstored: TestDaemon) -> Iterator[Client]:
        """A blocking client of this test's daemon (``xenstored``)."""
        with xenstored.client(timeout=CLIENT_TIMEOUT) as client:
            yield client
