"""Xen split drivers in Python: the XenBus handshake for backends and frontends, on trio.

A backend is a :class:`BackendDriver` with the device's own logic in a few hooks;
a :class:`BackendBus` finds the devices given to its domain and plays the
handshake around one driver per device. A frontend, run as the guest through its
own domain socket, is a :class:`FrontendDriver` run by a :class:`Frontend` (or a
:class:`FrontendBus` for every device of a type). A complete backend::

    import trio
    from xenstore.aclient import open_client
    from xenstore.xenbus import BackendBus, BackendDriver, Ring

    class RamDisk(BackendDriver):
        async def hotplug(self):                      # set the device up in dom0
            self.data = bytearray(1 << 20)
            return {"physical-device": "fe:0"}

        def features(self):                           # published with InitWait
            return {"feature-flush-cache": 1}

        async def connect(self, ring: Ring):          # the frontend's ring details
            return {"sectors": len(self.data) // 512, "sector-size": 512, "info": 0}

    async def main():
        async with open_client() as xs:               # dom0, at $XENSTORED_PATH
            await BackendBus(xs, backend_id=0, type_="vbd", driver=RamDisk).run()

    trio.run(main)

The pieces, module by module:

- :mod:`.state`: :class:`XenbusState`, the states each end writes to its ``state`` node;
- :mod:`.paths`: :class:`DeviceAddress` (where a device's two ends live) and
  :class:`XsPath` (paths built one component at a time);
- :mod:`.vdev`: :func:`vdev_to_devid`, disk names to Xen's device numbers;
- :mod:`.device`: :class:`End`, one side of a device and the moves of the handshake
  (watch-based waits, one-transaction publications, fatal errors);
- :mod:`.backend` and :mod:`.frontend`: the two sides' handshakes and buses;
- :mod:`.rings`: the ring details each device type names;
- :mod:`.hypervisor`: grant tables and event channels played on a laptop;
- :mod:`.drivers`: example drivers (block, network, console).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenstore.xenbus.backend import BackendBus, BackendDriver, HotplugError, run_backend
    from xenstore.xenbus.device import End, PeerGone, Side, XenbusError
    from xenstore.xenbus.frontend import Frontend, FrontendBus, FrontendDriver, frontend_address
    from xenstore.xenbus.paths import DeviceAddress, XsPath, backend_dir, domain_home, frontend_dir
    from xenstore.xenbus.rings import Queue, Ring
    from xenstore.xenbus.state import XenbusState
    from xenstore.xenbus.vdev import devid_to_vdev, vdev_to_devid

#: Where each public name lives: imported on first use, so that the pure parts
#: (paths, states, vdev numbers) load without trio, for quick command-line tools.
_HOMES = {
    "BackendBus": "backend", "BackendDriver": "backend", "HotplugError": "backend",
    "run_backend": "backend", "End": "device", "PeerGone": "device", "Side": "device",
    "XenbusError": "device", "Frontend": "frontend", "FrontendBus": "frontend",
    "FrontendDriver": "frontend", "frontend_address": "frontend",
    "DeviceAddress": "paths", "XsPath": "paths", "backend_dir": "paths",
    "domain_home": "paths", "frontend_dir": "paths", "Queue": "rings", "Ring": "rings",
    "XenbusState": "state", "devid_to_vdev": "vdev", "vdev_to_devid": "vdev",
}


def __getattr__(name: str) -> object:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'xenstore.xenbus' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"xenstore.xenbus.{module}"), name)


__all__ = [
    "BackendBus",
    "BackendDriver",
    "DeviceAddress",
    "End",
    "Frontend",
    "FrontendBus",
    "FrontendDriver",
    "HotplugError",
    "PeerGone",
    "Queue",
    "Ring",
    "Side",
    "XenbusError",
    "XenbusState",
    "XsPath",
    "backend_dir",
    "devid_to_vdev",
    "domain_home",
    "frontend_address",
    "frontend_dir",
    "run_backend",
    "vdev_to_devid",
]
