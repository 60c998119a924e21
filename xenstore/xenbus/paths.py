"""Where a split device lives in the store, addressed as Xen's toolstack lays it out.

A device of ``type`` (``vbd``, ``vif``, ``console``...) number ``devid`` of guest
``D``, served by backend domain ``B``::

    /local/domain/<D>/device/<type>/<devid>            the frontend's directory
        backend = "/local/domain/<B>/backend/<type>/<D>/<devid>"
        backend-id = "<B>"
    /local/domain/<B>/backend/<type>/<D>/<devid>       the backend's directory
        frontend = "/local/domain/<D>/device/<type>/<devid>"
        frontend-id = "<D>"

Errors a driver reports go under its own domain's ``error/`` directory, at the
device's path relative to the domain's home (as Linux's xenbus_dev_error does):
``/local/domain/<B>/error/backend/<type>/<D>/<devid>/error``.

Paths are :class:`XsPath` values: strings, built with ``/`` one validated
component at a time, so user code never glues paths together by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = re.compile(r"[A-Za-z0-9_@\-]+\Z")


class XsPath(str):
    """An absolute store path; ``path / "name"`` appends one component."""

    __slots__ = ()

    def __truediv__(self, name: str | int) -> XsPath:
        text = str(name)
        if not _COMPONENT.match(text):
            raise ValueError(f"not a path component: {text!r}")
        return XsPath(f"{self}/{text}" if self != "/" else f"/{text}")

    @property
    def name(self) -> str:
        """The last component."""
        return self.rsplit("/", 1)[1]

    @property
    def parent(self) -> XsPath:
        head = self.rsplit("/", 1)[0]
        return XsPath(head or "/")


ROOT = XsPath("/")


def domain_home(domid: int) -> XsPath:
    """``/local/domain/<domid>``."""
    return ROOT / "local" / "domain" / domid


def backend_dir(backend_id: int, type_: str) -> XsPath:
    """``/local/domain/<B>/backend/<type>``: what a backend bus watches."""
    return domain_home(backend_id) / "backend" / type_


def frontend_dir(frontend_id: int, type_: str) -> XsPath:
    """``/local/domain/<D>/device/<type>``: where a guest finds its devices."""
    return domain_home(frontend_id) / "device" / type_


#: Backend types that serve another frontend type (libxl: qemu's qdisk serves vbd).
FRONTEND_TYPE = {"qdisk": "vbd"}

_BACKEND = re.compile(r"/local/domain/(\d+)/backend/([A-Za-z0-9_\-]+)/(\d+)/(\d+)\Z")
_PRIMARY_CONSOLE = re.compile(r"/local/domain/(\d+)/console\Z")
_FRONTEND = re.compile(r"/local/domain/(\d+)/device/([A-Za-z0-9_\-]+)/(\d+)\Z")


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """One split device: its type, its guest, its number and its backend domain.

    ``backend_type`` is the backend's directory when it differs from the
    frontend's ``type``: a ``vbd`` served by qemu's ``qdisk`` (None otherwise).
    """

    type: str
    frontend_id: int
    devid: int
    backend_id: int = 0
    backend_type: str | None = None

    def __post_init__(self) -> None:
        if self.backend_type == self.type:  # one spelling of each address
            object.__setattr__(self, "backend_type", None)

    @property
    def backend_kind(self) -> str:
        """The backend's type: :attr:`backend_type`, or :attr:`type` itself."""
        return self.backend_type or self.type

    @property
    def frontend(self) -> XsPath:
        """The frontend's directory, in the guest's home. The primary console (console
        0) is the exception: ``/local/domain/<D>/console``, as libxl places it."""
        if self.type == "console" and self.devid == 0:
            return domain_home(self.frontend_id) / "console"
        return frontend_dir(self.frontend_id, self.type) / self.devid

    @property
    def backend(self) -> XsPath:
        """The backend's directory, in the backend domain's home."""
        return backend_dir(self.backend_id, self.backend_kind) / self.frontend_id / self.devid

    @property
    def frontend_error(self) -> XsPath:
        """Where the frontend reports an error: ``<D home>/error/device/<type>/<devid>``."""
        return domain_home(self.frontend_id) / "error" / "device" / self.type / self.devid

    @property
    def backend_error(self) -> XsPath:
        """Where the backend reports an error: ``<B home>/error/backend/<type>/<D>/<devid>``."""
        return (domain_home(self.backend_id) / "error" / "backend" / self.backend_kind
                / self.frontend_id / self.devid)

    @classmethod
    def of_backend(cls, path: str) -> DeviceAddress:
        """The device whose backend directory is ``path``; ValueError if it is not one."""
        match = _BACKEND.match(path)
        if match is None:
            raise ValueError(f"not a backend device path: {path}")
        backend_id, type_, frontend_id, devid = match.groups()
        return cls(FRONTEND_TYPE.get(type_, type_), int(frontend_id), int(devid),
                   int(backend_id), type_)

    @classmethod
    def of_frontend(cls, path: str, backend_id: int) -> DeviceAddress:
        """The device whose frontend directory is ``path``, served by ``backend_id``."""
        console = _PRIMARY_CONSOLE.match(path)
        if console is not None:
            return cls("console", int(console[1]), 0, backend_id)
        match = _FRONTEND.match(path)
        if match is None:
            raise ValueError(f"not a frontend device path: {path}")
        frontend_id, type_, devid = match.groups()
        return cls(type_, int(frontend_id), int(devid), backend_id)

    def __str__(self) -> str:
        return f"{self.type} {self.devid} of domain {self.frontend_id}"
