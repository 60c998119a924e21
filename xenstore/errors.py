"""XenStore errors: one exception class per errno name of xs_wire.h.

The wire carries the errno *name* (``b"ENOENT\\0"``), never the number, so each
class knows its wire name; ``.errno`` is the host's number for the same name
so that callers can compare with :mod:`errno` as they would for an ``OSError``.
"""

from __future__ import annotations

import errno as _errno


class XenStoreError(Exception):
    """An error reply from a XenStore daemon, or one the core will send."""

    name: str = "EIO"
    errno: int = _errno.EIO

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.name)
        self.detail = detail

    def __str__(self) -> str:
        if self.detail and self.detail != self.name:
            return f"{self.name}: {self.detail}"
        return self.name


class ProtocolError(Exception):
    """The byte stream broke the framing rules; the connection must be closed."""


# The errno names in the order of xsd_errors[] in xs_wire.h.
ERRNO_NAMES: tuple[str, ...] = (
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
)


class EINVAL(XenStoreError):
    name, errno = "EINVAL", _errno.EINVAL


class EACCES(XenStoreError):
    name, errno = "EACCES", _errno.EACCES


class EEXIST(XenStoreError):
    name, errno = "EEXIST", _errno.EEXIST


class EISDIR(XenStoreError):
    name, errno = "EISDIR", _errno.EISDIR


class ENOENT(XenStoreError):
    name, errno = "ENOENT", _errno.ENOENT


class ENOMEM(XenStoreError):
    name, errno = "ENOMEM", _errno.ENOMEM


class ENOSPC(XenStoreError):
    name, errno = "ENOSPC", _errno.ENOSPC


class EIO(XenStoreError):
    name, errno = "EIO", _errno.EIO


class ENOTEMPTY(XenStoreError):
    name, errno = "ENOTEMPTY", _errno.ENOTEMPTY


class ENOSYS(XenStoreError):
    name, errno = "ENOSYS", _errno.ENOSYS


class EROFS(XenStoreError):
    name, errno = "EROFS", _errno.EROFS


class EBUSY(XenStoreError):
    name, errno = "EBUSY", _errno.EBUSY


class EAGAIN(XenStoreError):
    name, errno = "EAGAIN", _errno.EAGAIN


class EISCONN(XenStoreError):
    name, errno = "EISCONN", _errno.EISCONN


class E2BIG(XenStoreError):
    name, errno = "E2BIG", _errno.E2BIG


class EPERM(XenStoreError):
    name, errno = "EPERM", _errno.EPERM


BY_NAME: dict[str, type[XenStoreError]] = {
    cls.name: cls
    for cls in (
        EINVAL, EACCES, EEXIST, EISDIR, ENOENT, ENOMEM, ENOSPC, EIO,
        ENOTEMPTY, ENOSYS, EROFS, EBUSY, EAGAIN, EISCONN, E2BIG, EPERM,
    )
}


def from_name(name: str) -> XenStoreError:
    """The exception for an ERROR reply's payload (unknown names become EIO, as libxenstore)."""
    cls = BY_NAME.get(name)
    if cls is None:
        return EIO(f"unknown error {name!r}")
    return cls()
