"""libxenstore as the C tools use it: ``xs_open`` and the calls, on bytes paths.

The tools hand argv bytes to the daemon unchanged and report failures the way
libxenstore does, as an errno: a daemon's error name becomes its errno (an
unknown name EINVAL), a connection the daemon closed becomes EBADF, and a
request longer than XENSTORE_PAYLOAD_MAX fails locally with E2BIG before
anything is sent, as in ``xs_talkv`` (:meth:`Client.request` does that;
DIRECTORY then falls back to DIRECTORY_PART, which is refused the same way).
"""

from __future__ import annotations

import errno
import os
import stat

from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import join, split
from xenstore.protocol.ops import Op
from xenstore.tools.cnum import strtol

__all__ = ["Failure", "ToolConnection", "open_connection", "perm_to_string"]

#: Where XENSTORED_RUNDIR points by default (XEN_RUN_STORED in Debian's build).
DEFAULT_RUNDIR = b"/var/run/xenstored"
#: sizeof(sockaddr_un.sun_path): paths this long or longer are EINVAL.
SUN_PATH_SIZE = 108


class Failure(Exception):
    """A libxenstore call failed; :attr:`errno` is what C's ``errno`` would hold."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.errno = code


def _errno_of(exc: BaseException) -> int:
    """The errno libxenstore would report for an exception raised by a call."""
    if isinstance(exc, errors.XenStoreError):
        # errors.from_name turns names it does not know into an EIO carrying
        # a detail; libxenstore's get_error() makes them EINVAL.
        if isinstance(exc, errors.EIO) and exc.detail:
            return errno.EINVAL
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    # The daemon hung up (read() returned 0): read_all() reports EBADF.
    return errno.EBADF


class ToolConnection(Client):
    """A :class:`Client` with libxenstore's calls, taking and returning bytes."""

    def _call(self, op: Op, payload: bytes, tx: int) -> bytes:
        try:
            return self.request(op, payload, tx)
        except (errors.XenStoreError, OSError, errors.ProtocolError) as exc:
            raise Failure(_errno_of(exc)) from None

    def xs_read(self, path: bytes, tx: int = 0) -> bytes:
        return self._call(Op.READ, join(path), tx)

    def xs_write(self, path: bytes, value: bytes, tx: int = 0) -> None:
        self._call(Op.WRITE, path + b"\0" + value, tx)

    def xs_rm(self, path: bytes, tx: int = 0) -> None:
        self._call(Op.RM, join(path), tx)

    def xs_directory(self, path: bytes, tx: int = 0) -> list[bytes]:
        """The children's names (DIRECTORY, else DIRECTORY_PART on E2BIG)."""
        try:
            names = self.directory(path, tx)
        except (errors.XenStoreError, OSError, errors.ProtocolError) as exc:
            raise Failure(_errno_of(exc)) from None
        return [name.encode() for name in names]

    def xs_get_permissions(self, path: bytes, tx: int = 0) -> list[bytes]:
        """The permissions as ``xs_get_permissions`` then ``xs_perm_to_string`` give them."""
        return [_perm_to_string(field) for field in split(self._call(Op.GET_PERMS, join(path), tx))]

    def xs_set_permissions(self, path: bytes, perms: list[bytes], tx: int = 0) -> None:
        self._call(Op.SET_PERMS, join(path, *perms), tx)

    def xs_transaction_start(self) -> int:
        """The new transaction's id; 0 (XBT_NULL) stands for failure, as in C."""
        try:
            reply = self._call(Op.TRANSACTION_START, b"\0", 0)
        except Failure:
            return 0
        # strtoul(reply, NULL, 0), truncated to the 32-bit xs_transaction_t.
        return strtol(reply.split(b"\0", 1)[0], 0)[0] & 0xFFFFFFFF

    def xs_transaction_end(self, tx: int, abort: bool) -> None:
        self._call(Op.TRANSACTION_END, b"F\0" if abort else b"T\0", tx)

    def xs_watch(self, path: bytes, token: bytes) -> None:
        self._call(Op.WATCH, join(path, token), 0)

    def xs_read_watch(self) -> bytes:
        """Block for the next watch event; return the path that fired."""
        try:
            epath, _token = self.read_watch()
        except (OSError, errors.ProtocolError) as exc:
            raise Failure(_errno_of(exc)) from None
        return epath.encode()


_PERM_LETTERS = frozenset(b"wrbn")
#: xs_perm_to_string's buffer: MAX_STRLEN(unsigned int) + 1 = 12 bytes, so
#: after the letter and before the NUL, 10 characters of the id.
_PERM_ID_MAX = 10


def perm_to_string(letter: bytes, domid: int) -> bytes:
    """``xs_perm_to_string``: the letter, then the id printed as a *signed* int.

    So id 4294967295 reads ``-1``, and snprintf into the 12-byte buffer cuts
    ids below -999999999 to 10 characters (``-214748364``).
    """
    domid &= 0xFFFFFFFF
    if domid >= 2**31:
        domid -= 2**32
    return letter + (b"%d" % domid)[:_PERM_ID_MAX]


def _perm_to_string(field: bytes) -> bytes:
    """Round-trip one permission through xs_strings_to_perms and xs_perm_to_string.

    The daemon's strings are already canonical (``b"n0"``); the round trip
    only matters for odd ids, which C reads with ``strtol(..., 0)``. A string
    C would reject fails with EINVAL.
    """
    if not field or field[0] not in _PERM_LETTERS:
        raise Failure(errno.EINVAL)
    digits = field[1:]
    value, used = strtol(digits, 0)
    if not digits or used != len(digits):
        raise Failure(errno.EINVAL)
    return perm_to_string(field[:1], value)


def _daemon_path() -> bytes:
    """xs_daemon_socket(): $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket.

    Set-but-empty variables count as set, as with getenv() in C.
    """
    path = os.environb.get(b"XENSTORED_PATH")
    if path is not None:
        return path
    rundir = os.environb.get(b"XENSTORED_RUNDIR")
    return (DEFAULT_RUNDIR if rundir is None else rundir) + b"/socket"


def _domain_dev() -> bytes:
    """xs_domain_dev(): $XENSTORED_PATH, else the Linux xenbus device."""
    path = os.environb.get(b"XENSTORED_PATH")
    if path is not None:
        return path
    if os.path.exists(b"/dev/xen/xenbus"):
        return b"/dev/xen/xenbus"
    return b"/proc/xen/xenbus"


def _get_handle(path: bytes) -> ToolConnection:
    """libxenstore's get_handle(): a socket if ``path`` is one, else a device file."""
    mode = os.stat(path).st_mode  # raises with stat()'s errno, as C fails there
    name = os.fsdecode(path)
    if not stat.S_ISSOCK(mode):
        return ToolConnection(name, device=True)
    if len(path) >= SUN_PATH_SIZE:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    return ToolConnection(name)


def open_connection() -> ToolConnection:
    """``xs_open(0)``: the daemon's socket, else the xenbus device.

    Raises :class:`Failure` with the errno of the last attempt.
    """
    try:
        return _get_handle(_daemon_path())
    except OSError:
        pass
    try:
        return _get_handle(_domain_dev())
    except OSError as exc:
        raise Failure(_errno_of(exc)) from None
