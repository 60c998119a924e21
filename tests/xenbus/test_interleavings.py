"""Random interleavings of the two ends' steps always end Connected, or Closed after a
close, and never deadlock.

Hypothesis draws, per example: which end starts first and how late, a delay
before every driver hook on both sides, commits refused with EAGAIN, watch events
delivered late (the daemon's fault injection), and whether the frontend or the
toolstack closes the device at some moment. Each example runs on a fresh device
of one long-lived daemon and must settle within a bound.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import OurDaemon
from tests.xenbus.helpers import GUEST, S, introduce, lay_out, wait_states
from xenstore.aclient import AsyncTransaction, open_client
from xenstore.testing import FaultInjector
from xenstore.xenbus import DeviceAddress
from xenstore.xenbus.backend import BackendBus, BackendDriver
from xenstore.xenbus.device import Value
from xenstore.xenbus.frontend import Frontend, FrontendDriver
from xenstore.xenbus.rings import Ring

#: How long one example may take to settle: a deadlock fails it, slowness does not.
SETTLE = 20
DELAYS = st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.02])


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[OurDaemon]:
    started = OurDaemon("--domain-dir", None, "--faults")
    try:
        yield started
    finally:
        started.stop()


_devids = itertools.count(51712, 16)


def delayed_backend(delays: Mapping[str, float]) -> type[BackendDriver]:
    class Slow(BackendDriver):
        async def hotplug(self) -> Mapping[str, Value]:
            await trio.sleep(delays["hotplug"])
            return {"physical-device": "fe:1"}

        def features(self) -> Mapping[str, Value]:
            return {"feature-flush-cache": 1}

        async def connect(self, ring: Ring) -> Mapping[str, Value]:
            await trio.sleep(delays["connect"])
            return {"sectors": 8, "sector-size": 512, "info": 0}

        async def disconnect(self) -> None:
            await trio.sleep(delays["disconnect"])

    return Slow


def delayed_frontend(delays: Mapping[str, float]) -> type[FrontendDriver]:
    class Slow(FrontendDriver):
        connect_details = ("sectors",)

        async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
            await trio.sleep(delays["ring"])
            return {"ring-ref": 9, "event-channel": 4}

        async def connected(self, details: Mapping[str, bytes]) -> None:
            await trio.sleep(delays["connected"])
            assert details == {"sectors": b"8"}

        async def disconnect(self) -> None:
            await trio.sleep(delays["front-disconnect"])

    return Slow


@settings(max_examples=int(os.environ.get("XS_INTERLEAVINGS", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    delays=st.fixed_dictionaries({name: DELAYS for name in (
        "hotplug", "connect", "disconnect", "ring", "connected", "front-disconnect",
        "backend-start", "frontend-start", "close-after")}),
    backend_first=st.booleans(),
    eagain=st.integers(0, 3),
    event_delay=st.sampled_from([0.0, 0.0, 0.01, 0.03]),
    close=st.sampled_from([None, "frontend", "toolstack"]),
)
def test_random_interleavings_settle(
    shared_daemon: OurDaemon, delays: dict[str, float], backend_first: bool, eagain: int,
    event_delay: float, close: str | None,
) -> None:
    address = DeviceAddress("vbd", GUEST, next(_devids), 0)
    faults = FaultInjector(shared_daemon.socket_path)
    faults.clear()
    trio.run(_one_example, shared_daemon, address, faults, delays, backend_first, eagain,
             event_delay, close)
    faults.clear()


async def _one_example(
    daemon: OurDaemon, address: DeviceAddress, faults: FaultInjector, delays: dict[str, float],
    backend_first: bool, eagain: int, event_delay: float, close: str | None,
) -> None:
    async with open_client(daemon.socket_path) as dom0:
        if not await dom0.exists(f"/local/domain/{GUEST}"):
            await introduce(dom0, GUEST)
        await lay_out(dom0, address)
        faults.eagain(eagain)
        faults.event_delay(event_delay)
        guest_path = os.path.join(daemon.directory, str(GUEST))
        async with open_client(guest_path) as guest, trio.open_nursery() as nursery:
            frontend = Frontend(guest, address, lambda end: delayed_frontend(delays)(end))

            async def backend() -> None:
                await trio.sleep(delays["backend-start"])
                bus = BackendBus(dom0, 0, "vbd", lambda end: delayed_backend(delays)(end))
                # Only this example's device: the bus sees the others as well.
                bus.devices.update({a: trio.CancelScope() for a in await bus._listing()
                                    if a != address})
                await bus.run()

            async def front() -> None:
                await trio.sleep(delays["frontend-start"])
                await frontend.run()

            first, second = (backend, front) if backend_first else (front, backend)
            nursery.start_soon(first)
            nursery.start_soon(second)
            with trio.fail_after(SETTLE):
                if close is None:
                    await frontend.connected.wait()
                    await wait_states(dom0, address, S.Connected, S.Connected)
                else:
                    await trio.sleep(delays["close-after"] * 10)
                    if close == "frontend":
                        frontend.close()
                    else:  # as libxl unplugs a device
                        async def unplug(t: AsyncTransaction) -> None:
                            await t.write(address.backend / "online", "0")
                            await t.write(address.backend / "state", "5")

                        await dom0.retry(unplug)
                    await frontend.closed.wait()
                    await wait_states(dom0, address, S.Closed, S.Closed)
            nursery.cancel_scope.cancel()
        faults.event_delay(0)
        await dom0.rm(address.backend)
        await dom0.rm(address.frontend)

