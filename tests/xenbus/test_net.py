"""The example network driver: netback in dom0 and netfront in the guest (through its
domain socket) over a real daemon, with Debian's ``xenstore-watch`` on the backend."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.fixtures import Host, open_host, recorded, xenstore_watch
from tests.xenbus.helpers import DEADLINE, GUEST, wait_states
from xenstore.xenbus import DeviceAddress, XenbusState
from xenstore.xenbus.backend import BackendBus
from xenstore.xenbus.drivers import Numbers
from xenstore.xenbus.drivers.net import Netback, Netfront
from xenstore.xenbus.frontend import Frontend
from xenstore.xenbus.specs import NicSpec

S = XenbusState
NIC = DeviceAddress("vif", GUEST, 0, 0)
MAC = "00:16:3e:12:34:56"


@pytest.fixture
async def host(daemon: OurDaemon) -> AsyncIterator[Host]:
    async with open_host(daemon) as started:
        yield started


async def add_nic(host: Host, bridge: str = "xenbr0") -> None:
    """The toolstack lays the nic out: ``mac`` in both directories, ``bridge``..."""
    assert await host.toolstack.add_nic(GUEST, NicSpec(mac=MAC, bridge=bridge)) == NIC


async def test_one_queue_to_connected_and_closed_by_the_frontend(host: Host) -> None:
    dom0, guest = host.dom0, host.guest
    await add_nic(host)
    backends, make = recorded(functools.partial(Netback, bridges={"xenbr0"},
                                                split_event_channels=False))
    state = NIC.backend / "state"
    with trio.fail_after(DEADLINE):
        async with xenstore_watch(host.socket_path, NIC.backend) as watch, \
                trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vif", make).run)
            frontend = Frontend(guest, NIC, Netfront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            await wait_states(dom0, NIC, S.Connected, S.Connected)

            assert await dom0.read(NIC.backend / "hotplug-status") == b"connected"
            for name, value in (("feature-sg", b"1"), ("feature-gso-tcpv4", b"1"),
                                ("feature-rx-copy", b"1"), ("feature-rx-flip", b"0"),
                                ("feature-split-event-channels", b"0"),
                                ("multi-queue-max-queues", b"4")):
                assert await dom0.read(NIC.backend / name) == value
            for name, value in (("tx-ring-ref", b"8"), ("rx-ring-ref", b"9"),
                                ("event-channel", b"1"), ("request-rx-copy", b"1"),
                                ("feature-rx-notify", b"1"), ("feature-sg", b"1")):
                assert await dom0.read(NIC.frontend / name) == value
            assert not await dom0.exists(NIC.frontend / "multi-queue-num-queues")
            assert not await dom0.exists(NIC.frontend / "queue-0")

            back = backends[0]
            assert (back.bridge, back.mac, back.interface) == ("xenbr0", MAC, "vif3.0")
            assert back.ring is not None and back.ring.refs == (8, 9)
            assert back.ring.event_channels == (1,)
            assert back.frontend_features == {"feature-sg": True, "feature-gso-tcpv4": True}
            front = frontend.driver
            assert isinstance(front, Netfront)
            assert front.mac == MAC and front.link_up
            assert front.offloads == {"feature-sg": True, "feature-gso-tcpv4": True}

            frontend.close()
            await frontend.closed.wait()
            await wait_states(dom0, NIC, S.Closed, S.Closed)
            assert back.ring is None and not front.link_up
            # InitWait, Connected, Closing, Closed: each switch is one event on state.
            await watch.wait_for(lambda lines: lines.count(state) == 4)
            nursery.cancel_scope.cancel()
    assert watch.first(NIC.backend / "hotplug-status") < watch.first(state)
    assert watch.first(NIC.backend / "multi-queue-max-queues") < watch.first(state)


@pytest.mark.parametrize(("wanted", "most", "queues"), [(4, 4, 4), (8, 4, 4), (3, 2, 2)])
async def test_several_queues_up_to_the_backends_maximum(
    host: Host, wanted: int, most: int, queues: int,
) -> None:
    dom0, guest = host.dom0, host.guest
    await add_nic(host)
    backends, make = recorded(functools.partial(Netback, max_queues=most))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vif", make).run)
            frontend = Frontend(guest, NIC, functools.partial(
                Netfront, queues=wanted, grants=Numbers(20), ports=Numbers(40)))
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            await wait_states(dom0, NIC, S.Connected, S.Connected)

            assert await dom0.read(NIC.frontend / "multi-queue-num-queues") == b"%d" % queues
            for i in range(queues):
                queue = NIC.frontend / f"queue-{i}"
                # Split event channels (the backend offers them): two ports a queue.
                assert [await dom0.read(queue / name) for name in (
                    "tx-ring-ref", "rx-ring-ref", "event-channel-tx", "event-channel-rx",
                )] == [b"%d" % n for n in (20 + 2 * i, 21 + 2 * i, 40 + 2 * i, 41 + 2 * i)]
            assert not await dom0.exists(NIC.frontend / f"queue-{queues}")
            assert not await dom0.exists(NIC.frontend / "tx-ring-ref")
            assert not await dom0.exists(NIC.frontend / "event-channel")
            back = backends[0]
            assert back.ring is not None and len(back.ring.queues) == queues
            assert all(len(queue.event_channels) == 2 for queue in back.ring.queues)
            front = frontend.driver
            assert isinstance(front, Netfront) and len(front.queues) == queues
            nursery.cancel_scope.cancel()


async def test_the_toolstack_unplugs_a_connected_nic(host: Host) -> None:
    dom0, guest = host.dom0, host.guest
    await add_nic(host)
    state = NIC.backend / "state"
    with trio.fail_after(DEADLINE):
        async with xenstore_watch(host.socket_path, NIC.backend) as watch, \
                trio.open_nursery() as nursery:
            bus = BackendBus(dom0, 0, "vif", Netback)
            await nursery.start(bus.run)
            frontend = Frontend(guest, NIC, Netfront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            await wait_states(dom0, NIC, S.Connected, S.Connected)
            # As libxl removes a device: online 0 and the backend Closing, in one go;
            # once the backend is Closed, the directories go.
            await host.toolstack.remove_device(NIC)
            await frontend.closed.wait()
            assert not await dom0.exists(NIC.backend)
            assert not await dom0.exists(NIC.frontend)
            # InitWait, Connected, Closing (the toolstack's), Closed.
            await watch.wait_for(lambda lines: lines.count(state) == 4)
            nursery.cancel_scope.cancel()
    # online went to 0 after the backend was Connected, and before it was Closed.
    switches = [i for i, path in enumerate(watch.lines) if path == state]
    assert switches[1] < watch.first(NIC.backend / "online") < switches[3]


async def test_an_unknown_bridge_fails_hotplug(host: Host) -> None:
    dom0, guest = host.dom0, host.guest
    await add_nic(host, bridge="xenbr9")
    message = b"no such bridge: xenbr9"
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(
                dom0, 0, "vif", functools.partial(Netback, bridges={"xenbr0"})).run)
            frontend = Frontend(guest, NIC, Netfront)
            nursery.start_soon(frontend.run)
            await frontend.closed.wait()
            await wait_states(dom0, NIC, S.Closed, S.Closed)
            assert await dom0.read(NIC.backend / "hotplug-status") == b"error"
            assert await dom0.read(NIC.backend / "hotplug-error") == message
            assert await dom0.read(NIC.backend_error / "error") == b"5 " + message
            assert not await dom0.exists(NIC.frontend / "tx-ring-ref")
            nursery.cancel_scope.cancel()
