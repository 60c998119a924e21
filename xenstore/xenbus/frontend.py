"""Frontends: the guest's side of the handshake, run through the guest's own connection.

A frontend runs as the guest: its client is connected to the guest's domain
socket (``open_client(<domain dir>/<domid>)``), so it has exactly the rights
libxl gives a guest (its ``device/`` directories are its own; the backend's are
readable to it). :class:`FrontendBus` finds ``device/<type>/*`` in the guest's
home and runs one task per device around a :class:`FrontendDriver`:

1. wait for the backend's InitWait (or Connected), read the backend's features
   (:attr:`FrontendDriver.backend_features`);
2. publish its ring details (:meth:`FrontendDriver.ring_details`) and
   Initialised, in one transaction retried on EAGAIN;
3. once the backend is Connected: read its connect details
   (:attr:`FrontendDriver.connect_details`), :meth:`FrontendDriver.connected`,
   and go Connected; :meth:`FrontendDriver.serve` runs while connected;
4. closing: the backend Closing (or Closed) makes the frontend disconnect and
   go Closed; :meth:`Frontend.close` starts a close from this side (Closing,
   then Closed once the backend is Closing).

A frontend that finds its device half-way through a handshake (it was restarted)
goes through Closing to start afresh; one that finds both ends Connected
re-attaches. A backend whose directory vanishes is a :class:`PeerGone` error,
never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient
from xenstore.xenbus.device import End, PeerGone, Side, Value, XenbusError
from xenstore.xenbus.observe import observe
from xenstore.xenbus.paths import DeviceAddress, XsPath, frontend_dir
from xenstore.xenbus.rings import RING_NODES
from xenstore.xenbus.state import XenbusState as S

log = logging.getLogger("xenstore.xenbus")


class FrontendDriver:
    """The guest's side of a device; override what it needs. ``self.end`` is its end."""

    #: Backend nodes read before the ring details are made (its features).
    backend_features: tuple[str, ...] = ()
    #: Backend nodes read once it is Connected (what it published with Connected).
    connect_details: tuple[str, ...] = ()
    #: The state published with the ring details: Initialised, as Linux's blkfront;
    #: netfront goes straight to Connected.
    published_state: S = S.Initialised
    #: The frontend's nodes its ring details replace (patterns); None: by device
    #: type (rings.RING_NODES). Those not published again are removed.
    ring_nodes: tuple[str, ...] | None = None

    def __init__(self, end: End) -> None:
        self.end = end

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        """Set up the rings; returns the nodes to publish (``ring-ref``, ``event-channel``...)."""
        return {}

    async def connected(self, details: Mapping[str, bytes]) -> None:
        """The backend is Connected and published ``details``. Raise XenbusError to refuse."""

    async def reattach(self, details: Mapping[str, bytes]) -> None:
        """Both ends were already Connected when this frontend started."""
        await self.connected(details)

    async def serve(self) -> None:
        """Runs while Connected; cancelled when the device closes."""
        await trio.sleep_forever()

    async def disconnect(self) -> None:
        """Let go of the rings (the device is closing)."""


FrontendFactory = Callable[[End], FrontendDriver]


class Frontend:
    """One device's frontend task: :meth:`run` it, :meth:`close` it."""

    def __init__(self, xs: AsyncClient, address: DeviceAddress, factory: FrontendFactory):
        self.end = End(xs, address, Side.FRONTEND)
        self.driver = factory(self.end)
        self._close = trio.Event()
        #: Set once Connected (and reset when it closes).
        self.connected = trio.Event()
        self.closed = trio.Event()

    def close(self) -> None:
        """Start closing from this side; :attr:`closed` is set once both ends are Closed."""
        self._close.set()

    async def run(self) -> None:
        """Until the device is closed (by either side) or removed."""
        end, driver = self.end, self.driver
        attached = False
        published = False
        resetting = False
        serving: trio.CancelScope | None = None
        gone: PeerGone | None = None
        failed: XenbusError | None = None

        async def disconnect() -> None:
            nonlocal attached, serving
            if serving is not None:
                serving.cancel()
                serving = None
            if attached:
                attached = False
                self.connected = trio.Event()
                await driver.disconnect()

        async def serve(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                await driver.serve()

        paths = [end.own / "state", end.peer / "state"]
        close_watch = trio.CancelScope()
        async with trio.open_nursery() as nursery, observe(end.xs, paths) as observer:

            async def wake_on_close() -> None:
                with close_watch:
                    await self._close.wait()
                    observer._changed()

            nursery.start_soon(wake_on_close)
            first = True
            while True:
                snap = await observer.next()
                mine, peer = S.parse(snap[paths[0]]), S.parse(snap[paths[1]])
                if snap[paths[0]] is None and not await end.visible(end.own):
                    break  # the toolstack removed the device
                if snap[paths[1]] is None and not await end.visible(end.peer):
                    gone = PeerGone(f"the backend of {end.address} is gone ({end.peer} was "
                                    f"removed) while the frontend was {mine.name}")
                    break
                try:
                    if first and mine not in (S.Unknown, S.Initialising, S.Closed):
                        if mine == S.Connected and peer == S.Connected:
                            await driver.reattach(await self._details())
                            attached = True
                            serving = await nursery.start(serve)
                            self.connected.set()
                        else:  # restarted half-way: start afresh through Closing
                            resetting = True
                            await end.switch_state(S.Closing)
                    elif peer in (S.Closing, S.Closed) and mine not in (S.Closed, S.Unknown):
                        await disconnect()
                        published = False
                        if peer == S.Closing or mine == S.Closing:
                            await end.switch_state(S.Closed)
                    elif mine == S.Closed and peer == S.Closed:
                        if self._close.is_set() or not resetting:
                            break
                        resetting = False
                        await end.switch_state(S.Initialising)
                    elif self._close.is_set():
                        if mine not in (S.Closing, S.Closed):
                            await disconnect()
                            await end.switch_state(S.Closing)
                    elif not published and mine in (S.Unknown, S.Initialising) and peer in (
                            S.InitWait, S.Connected):
                        features = await end.read_peer_many(driver.backend_features)
                        details = await driver.ring_details(features)
                        replace = driver.ring_nodes
                        if replace is None:
                            replace = RING_NODES.get(end.address.type, ())
                        await end.publish(details, driver.published_state, replace=replace)
                        published = True
                    elif published and peer == S.Connected and not attached:
                        await driver.connected(await self._details())
                        attached = True
                        if mine != S.Connected:
                            await end.switch_state(S.Connected)
                        serving = await nursery.start(serve)
                        self.connected.set()
                except XenbusError as exc:
                    await disconnect()
                    if not await end.fatal(exc):
                        failed = exc  # nothing else can be done: say why, do not hang
                        break
                first = False
            await disconnect()
            close_watch.cancel()
            nursery.cancel_scope.cancel()
        self.closed.set()
        # Raised here, not inside the nursery: as themselves, not in an exception group.
        if gone is not None:
            raise gone
        if failed is not None:
            raise failed

    async def _details(self) -> dict[str, bytes]:
        return await self.end.read_peer_many(self.driver.connect_details)


async def frontend_address(xs: AsyncClient, directory: XsPath) -> DeviceAddress:
    """The device whose frontend directory is ``directory``, with its backend's id read
    from ``backend-id`` (and checked against ``backend``)."""
    backend_id = await xs.read(directory / "backend-id")
    if not backend_id.isdigit():
        raise XenbusError(f"{directory}/backend-id is not a domid: {backend_id!r}", 22)
    backend = (await xs.read(directory / "backend")).decode("latin-1")
    try:  # the backend's own type may differ (qemu's qdisk serves a vbd)
        address = DeviceAddress.of_backend(backend)
    except ValueError:
        raise XenbusError(f"{directory}/backend is not a backend path: {backend}", 22) from None
    if address.frontend != directory or address.backend_id != int(backend_id):
        raise XenbusError(f"{directory}/backend is {backend}, which serves "
                          f"{address.frontend} of domain {address.backend_id}", 22)
    return address


class FrontendBus:
    """The frontends of one device type in guest ``domid``, run through ``xs`` (the
    guest's own connection). :meth:`run` serves until cancelled."""

    def __init__(self, xs: AsyncClient, domid: int, type_: str,
                 driver: FrontendFactory) -> None:
        self.xs = xs
        self.root = frontend_dir(domid, type_)
        self.driver = driver
        #: Each device found, with its running frontend.
        self.devices: dict[XsPath, Frontend] = {}
        self._seen: set[XsPath] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery, observe(self.xs, [self.root]) as observer:
            started = False
            while True:
                await observer.next()
                try:
                    names = await self.xs.directory(self.root)
                except errors.ENOENT:
                    names = []
                for name in names:
                    path = self.root / name
                    if name.isdigit() and path not in self._seen:
                        self._seen.add(path)
                        nursery.start_soon(self._device, path)
                if not started:
                    started = True
                    task_status.started()

    async def _device(self, path: XsPath) -> None:
        try:
            address = await frontend_address(self.xs, path)
            frontend = Frontend(self.xs, address, self.driver)
            self.devices[path] = frontend
            await frontend.run()
        except (errors.XenStoreError, XenbusError, PeerGone) as exc:
            log.warning("frontend %s: %s", path, exc)
        except Exception:
            log.exception("frontend %s failed", path)
