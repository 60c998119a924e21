"""Xen split drivers in Python: the XenBus handshake for backends and frontends, on trio.

See the README's "Writing a backend" for a complete driver; the pieces:

- :class:`XenbusState` (:mod:`.state`): the states each end writes to its ``state`` node;
- :class:`DeviceAddress`, :class:`XsPath` (:mod:`.paths`): where a device's two
  ends live, paths built one component at a time;
- :func:`vdev_to_devid` (:mod:`.vdev`): disk names to Xen's device numbers.
"""

from xenstore.xenbus.paths import DeviceAddress, XsPath, backend_dir, domain_home, frontend_dir
from xenstore.xenbus.state import XenbusState
from xenstore.xenbus.vdev import devid_to_vdev, vdev_to_devid

__all__ = [
    "DeviceAddress",
    "XenbusState",
    "XsPath",
    "backend_dir",
    "devid_to_vdev",
    "domain_home",
    "frontend_dir",
    "vdev_to_devid",
]
