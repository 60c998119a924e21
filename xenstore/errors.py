"""XenStore errors: one exception class per errno name of xs_wire.h.

The wire carries the errno *name* (``b"ENOENT\\0"``), never the number, so each
class knows its wire name; ``.errno`` is the host's number for the same name
so that callers can compare with :mod:`errno` as they would for an ``OSError``
(``.strerror`` too; pyxs users know them as ``args[0]`` and ``args[1]`` of its
``PyXSError``). The clients say where an error happened::

    xenstore.errors.EINVAL: write '/bad path': EINVAL (invalid argument)

and a client that cannot reach the daemon raises :class:`ConnectionError`
(pyxs's name), naming the socket it tried and what to set.
"""

from __future__ import annotations

import builtins
import errno as _errno
import os


def _strerror(code: int) -> str:
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


class XenStoreError(Exception):
    """An error reply from a XenStore daemon, or one the core will send.

    A client's error tells where it happened: :attr:`op` (the client's name for
    the request, ``"write"``), :attr:`path` (the node it named, if any) and
    :attr:`subject` (what the message names: the path, a domid...). The core's
    own errors have none of them.
    """

    name: str = "EIO"
    errno: int = _errno.EIO
    op: str | None = None
    path: str | None = None
    subject: str | None = None

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.name)
        self.detail = detail

    @property
    def strerror(self) -> str:
        """The host's text for :attr:`errno`, as ``OSError.strerror``."""
        return os.strerror(self.errno)

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail and self.detail != self.name else ""
        if self.op is None:
            return f"{self.name}{detail}"
        where = self.op if self.subject is None else f"{self.op} {self.subject}"
        return f"{where}: {self.name} ({_strerror(self.errno)}){detail}"


class ConnectionError(builtins.ConnectionError):  # pyxs names it so
    """The daemon could not be reached: names the socket (or device) tried.

    It is also the very ``OSError`` the connection failed with (a missing
    socket is a :class:`FileNotFoundError` too, a refused one a
    :class:`ConnectionRefusedError`), with ``.errno``, ``.strerror`` and the
    path as ``.filename``; :func:`connection_error` makes one.
    """

    #: Where the path came from and what to do, e.g. "($XENSTORED_PATH)".
    hint: str = ""

    def __str__(self) -> str:
        return (f"cannot connect to the XenStore daemon at {self.filename!r}: "
                f"{self.strerror}{self.hint}")


_CONNECTION_ERRORS: dict[type[OSError], type[ConnectionError]] = {}


def connection_error(exc: OSError, path: str, hint: str = "") -> ConnectionError:
    """A :class:`ConnectionError` that is also ``exc``'s own class, for ``path``."""
    base = type(exc)
    cls = _CONNECTION_ERRORS.get(base)
    if cls is None:
        if issubclass(ConnectionError, base):  # OSError, builtins.ConnectionError
            cls = ConnectionError
        else:
            cls = type(f"ConnectionError_{base.__name__}", (ConnectionError, base), {})
            cls.__qualname__ = cls.__name__ = "ConnectionError"
        _CONNECTION_ERRORS[base] = cls
    error = cls(exc.errno, exc.strerror or str(exc), path)
    error.hint = hint
    return error


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
