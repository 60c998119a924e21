"""Backends: a bus that finds devices as Linux's backend probe does, and the handshake.

:class:`BackendBus` watches ``/local/domain/<B>/backend/<type>`` and runs one
task per device directory ``<D>/<devid>`` below it: a new one starts a driver,
a removed one ends it. Each task plays the backend's side of the XenBus
handshake around a :class:`BackendDriver`, whose hooks hold the device's own
logic:

1. hotplug (:meth:`BackendDriver.hotplug`): its nodes are written with
   ``hotplug-status`` = ``connected``, as the hotplug scripts do; a
   :class:`HotplugError` writes ``hotplug-error`` and ``hotplug-status`` =
   ``error`` instead, and is fatal;
2. its features (:meth:`BackendDriver.features`) and InitWait, in one transaction;
3. once the frontend is Initialised (or Connected): its ring details
   (:mod:`~xenstore.xenbus.rings`), :meth:`BackendDriver.connect`, whose connect
   details are published with Connected, in one transaction;
4. while connected, :meth:`BackendDriver.serve` runs;
5. closing, as Linux's backends do: the frontend Closing (or the toolstack's
   ``online`` = 0, or the backend's state set to Closing by the toolstack, or a
   fatal error) makes the backend disconnect and go Closing; the frontend
   Closed makes it Closed, and then, unless ``online`` is 0, ready to start
   again when the frontend does.

A backend that starts while a device is already Connected on both sides
(a restarted backend) re-attaches (:meth:`BackendDriver.reattach`) without
switching any state, so the guest never notices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient
from xenstore.xenbus.device import End, PeerGone, Side, Value, XenbusError
from xenstore.xenbus.observe import Snapshot, observe
from xenstore.xenbus.paths import FRONTEND_TYPE, DeviceAddress, backend_dir
from xenstore.xenbus.rings import Reader, Ring, read_ring
from xenstore.xenbus.state import XenbusState as S

log = logging.getLogger("xenstore.xenbus")


class HotplugError(XenbusError):
    """Hotplug failed: written as ``hotplug-error``, with ``hotplug-status`` = ``status``
    (``error``, or ``busy`` as the block script says of a disk in use elsewhere)."""

    def __init__(self, message: str, errno_value: int = 5, status: str = "error") -> None:
        super().__init__(message, errno_value)
        self.status = status


class BackendDriver:
    """The device's own logic; override what it needs. ``self.end`` is the backend's end."""

    #: How to read this type's ring details; None: by the device type (rings.READERS).
    ring_reader: Reader | None = None

    def __init__(self, end: End) -> None:
        self.end = end

    async def hotplug(self) -> Mapping[str, Value]:
        """Set the device up in dom0 (what a hotplug script does); returns the nodes the
        script would write (``physical-device``...). Raise :class:`HotplugError` to fail."""
        return {}

    def features(self) -> Mapping[str, Value]:
        """The ``feature-*`` (and other) nodes to publish with InitWait."""
        return {}

    async def connect(self, ring: Ring) -> Mapping[str, Value]:
        """Map the frontend's ring; returns the connect details to publish with Connected
        (``sectors``, ``sector-size``...). Raise :class:`XenbusError` to fail."""
        return {}

    async def reattach(self, ring: Ring) -> None:
        """Pick up a device already Connected (the backend restarted): map the ring again,
        publish nothing. By default, :meth:`connect` with its details discarded."""
        await self.connect(ring)

    async def serve(self) -> None:
        """Runs while the device is Connected (the data path); cancelled when it closes."""
        await trio.sleep_forever()

    async def disconnect(self) -> None:
        """Let go of the ring (the device is closing)."""

    async def remove(self) -> None:
        """The device is gone for good (``online`` 0 and Closed, or its directory
        removed): undo what :meth:`hotplug` set up, as the scripts' ``remove`` step."""


#: How long :meth:`BackendDriver.remove` may take when the device's task is cancelled.
REMOVE_TIMEOUT = 5.0

DriverFactory = Callable[[End], BackendDriver]


def _online(snap: Snapshot, end: End) -> bool:
    return snap[end.own / "online"] != b"0"


async def run_backend(xs: AsyncClient, address: DeviceAddress, factory: DriverFactory,
                      *, driver: BackendDriver | None = None) -> None:
    """Play the backend's side of ``address`` until it is closed for good (``online`` 0)
    or its directory goes; then :meth:`BackendDriver.remove` runs. Cancelled (the
    backend stops), it leaves the device as it is, for a later backend to re-attach."""
    if driver is None:
        driver = factory(End(xs, address, Side.BACKEND))
    await _handshake(xs, driver)
    await _remove(driver)


async def _remove(driver: BackendDriver) -> None:
    with trio.move_on_after(REMOVE_TIMEOUT) as scope:
        scope.shield = True  # runs to its end even while the bus is being cancelled
        try:
            await driver.remove()
        except Exception:
            log.exception("%r: removing failed", driver.end)


async def _handshake(xs: AsyncClient, driver: BackendDriver) -> None:
    end = driver.end
    connected = False
    serving: trio.CancelScope | None = None

    async def disconnect() -> None:
        nonlocal connected, serving
        if serving is not None:
            serving.cancel()
            serving = None
        if connected:
            connected = False
            await driver.disconnect()

    async def serve(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await driver.serve()

    paths = [end.own / "state", end.own / "online", end.peer / "state"]
    failed: XenbusError | None = None
    async with trio.open_nursery() as nursery, observe(xs, paths) as observer:
        while True:
            snap = await observer.next()
            if snap[end.own / "state"] is None and not await end.visible(end.own):
                break  # the toolstack removed the device
            mine = S.parse(snap[end.own / "state"])
            peer = S.parse(snap[end.peer / "state"])
            online = _online(snap, end)
            try:
                if mine == S.Connected and not connected and peer in (S.Initialised,
                                                                      S.Connected):
                    await driver.reattach(await read_ring(end, driver.ring_reader))
                    connected = True
                    serving = await nursery.start(serve)
                    log.info("%r: re-attached", end)
                elif peer == S.Closed or (peer == S.Unknown and mine >= S.Connected):
                    # The frontend let go (or went): so do we.
                    await disconnect()
                    if mine != S.Closed:
                        await end.switch_state(S.Closed)
                    if not online:
                        break
                elif peer == S.Closing or not online or mine == S.Closing:
                    await disconnect()
                    if mine not in (S.Closing, S.Closed):
                        await end.switch_state(S.Closing)
                elif mine in (S.Unknown, S.Initialising) or (
                        mine == S.Closed and peer in (S.Initialising, S.InitWait)):
                    await _prepare(end, driver)
                elif mine == S.InitWait and peer in (S.Initialised, S.Connected):
                    ring = await read_ring(end, driver.ring_reader)
                    details = await driver.connect(ring)
                    connected = True
                    await end.publish(details, S.Connected)
                    serving = await nursery.start(serve)
            except XenbusError as exc:
                await disconnect()
                if not await end.fatal(exc):
                    failed = exc  # nothing else can be done: say why, do not hang
                    break
            except PeerGone:
                break
        await disconnect()
        nursery.cancel_scope.cancel()
    if failed is not None:  # raised outside the nursery: as itself, not in a group
        raise failed


async def _prepare(end: End, driver: BackendDriver) -> None:
    """Hotplug, then the features and InitWait."""
    await end.clear_error()
    try:
        nodes = dict(await driver.hotplug())
    except HotplugError as exc:
        await end.publish({"hotplug-error": str(exc), "hotplug-status": exc.status})
        raise
    nodes["hotplug-status"] = "connected"
    await end.publish(nodes)
    await end.publish(driver.features(), S.InitWait)


class BackendBus:
    """The backends of one device type in backend domain ``backend_id``.

    ``driver`` makes a :class:`BackendDriver` for each device found. :meth:`run`
    serves until cancelled; a device's failure is logged and costs that device.
    """

    def __init__(self, xs: AsyncClient, backend_id: int, type_: str,
                 driver: DriverFactory) -> None:
        self.xs = xs
        self.backend_id = backend_id
        self.type = type_
        self.driver = driver
        self.root = backend_dir(backend_id, type_)
        #: The devices being served, and the scope of each one's task.
        self.devices: dict[DeviceAddress, trio.CancelScope] = {}
        #: Each device's driver (for its data path), while its directory exists.
        self.drivers: dict[DeviceAddress, BackendDriver] = {}

    async def _listing(self) -> set[DeviceAddress]:
        found: set[DeviceAddress] = set()
        try:
            frontends = await self.xs.directory(self.root)
        except errors.ENOENT:
            return found
        for frontend_id in frontends:
            if not frontend_id.isdigit():
                continue
            try:
                devids = await self.xs.directory(self.root / frontend_id)
            except errors.ENOENT:
                continue
            for devid in devids:
                if devid.isdigit():
                    found.add(DeviceAddress(FRONTEND_TYPE.get(self.type, self.type),
                                            int(frontend_id), int(devid), self.backend_id,
                                            self.type))
        return found

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve every device under ``backend/<type>`` until cancelled; ``task_status``
        is started once the devices there now have their tasks."""
        async with trio.open_nursery() as nursery, observe(self.xs, [self.root]) as observer:
            started = False
            while True:
                await observer.next()
                present = await self._listing()
                for address in present - self.devices.keys():
                    scope = trio.CancelScope()
                    self.devices[address] = scope
                    nursery.start_soon(self._device, address, scope)
                for address in self.devices.keys() - present:
                    self.devices.pop(address).cancel()
                    driver = self.drivers.pop(address, None)
                    if driver is not None:  # its directory went: the device is gone
                        nursery.start_soon(_remove, driver)
                if not started:
                    started = True
                    task_status.started()

    async def _device(self, address: DeviceAddress, scope: trio.CancelScope) -> None:
        # The entry stays in ``devices`` after the task ends (closed for good, or
        # failed): the device is not started again until its directory goes.
        with scope:
            try:
                driver = self.driver(End(self.xs, address, Side.BACKEND))
                self.drivers[address] = driver
                await run_backend(self.xs, address, self.driver, driver=driver)
                if self.drivers.get(address) is driver:
                    del self.drivers[address]  # removed already: done with it
            except (errors.XenStoreError, XenbusError) as exc:
                log.warning("backend of %s failed: %s", address, exc)
            except Exception:
                log.exception("backend of %s failed", address)
