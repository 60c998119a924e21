"""Request payloads and reply parsing shared by the blocking and the trio client.

Sans-I/O: nothing here sends or receives, so :mod:`xenstore.client` and
:mod:`xenstore.aclient` build the same bytes and read replies the same way and
differ only in how they wait. Like the codec, this module must stay free of
trio and construct (the CLI tools import it through the blocking client).
"""

from __future__ import annotations

from xenstore import errors
from xenstore.protocol.codec import join, split
from xenstore.protocol.ops import PAYLOAD_MAX, Op

#: The clients' names for the requests whose name is not the op's in lower case.
_METHOD_NAMES: dict[int, str] = {
    Op.INTRODUCE: "introduce_domain",
    Op.RELEASE: "release_domain",
    Op.RESUME: "resume_domain",
}
#: Requests whose first field is a path, and those whose first field is a domid.
_PATH_OPS = frozenset((Op.READ, Op.WRITE, Op.MKDIR, Op.RM, Op.DIRECTORY, Op.DIRECTORY_PART,
                       Op.GET_PERMS, Op.SET_PERMS, Op.WATCH, Op.UNWATCH))
_DOMAIN_OPS = frozenset((Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED, Op.RESUME,
                         Op.SET_TARGET, Op.GET_DOMAIN_PATH))


def _method_name(op: int) -> str:
    name = _METHOD_NAMES.get(op)
    if name is not None:
        return name
    try:
        return str(Op(op).name).lower()
    except ValueError:
        return f"op {op}"


def _subject(op: int, payload: bytes, tx: int) -> tuple[str | None, str | None]:
    """The path a request names (if any), and how a message shows what it acts on."""
    first = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
    if op in _PATH_OPS:
        return first, repr(first)
    if op in _DOMAIN_OPS:
        return None, first
    if op == Op.TRANSACTION_END:
        return None, str(tx)
    if op == Op.CONTROL:
        return None, repr(" ".join(name.decode("utf-8", "replace") for name in split(payload)))
    return None, None


def located(
    error: errors.XenStoreError, op: int, payload: bytes, tx: int = 0
) -> errors.XenStoreError:
    """``error`` told where it happened: the request (by the client's name for it) and
    what it named (a path; a domid; a transaction's id; CONTROL's words)."""
    error.op = _method_name(op)
    error.path, error.subject = _subject(op, payload, tx)
    return error


def lost(exc: OSError, op: int, payload: bytes, tx: int, socket_path: str) -> OSError:
    """``exc``, raised by the connection during a request, told the request and the
    socket: of the same class and errno, so that callers catch what they caught."""
    _, subject = _subject(op, payload, tx)
    where = _method_name(op) if subject is None else f"{_method_name(op)} {subject}"
    reason = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    text = f"{where}: {reason} (XenStore socket {socket_path!r})"
    try:
        return type(exc)(exc.errno, text) if exc.errno is not None else type(exc)(text)
    except TypeError:  # a subclass with a constructor of its own
        return exc


def check_size(op: int, payload: bytes, tx: int = 0) -> None:
    """Raise :class:`errors.E2BIG` for a payload the daemon would not accept."""
    if len(payload) > PAYLOAD_MAX:
        # libxenstore refuses these too: the daemon would drop the connection.
        error = errors.E2BIG(f"request of {len(payload)} bytes exceeds {PAYLOAD_MAX}")
        raise located(error, op, payload, tx)


def error_of(
    payload: bytes, op: int | None = None, request: bytes = b"", tx: int = 0
) -> errors.XenStoreError:
    """The typed exception for the payload of an ERROR reply (``b"ENOENT\\0"``), told
    which request (``op``, its payload ``request``, ``tx``) it answered if given."""
    error = errors.from_name(payload.rstrip(b"\0").decode("ascii", "replace"))
    return error if op is None else located(error, op, request, tx)


def write_payload(path: str, value: bytes | str) -> bytes:
    """WRITE's payload: the path, a NUL, then the value with no terminator."""
    data = value.encode() if isinstance(value, str) else value
    return path.encode() + b"\0" + data


def listing_names(reply: bytes) -> list[str]:
    """The NUL-terminated strings of a reply (DIRECTORY, GET_PERMS)."""
    return [name.decode() for name in split(reply)]


def tx_id_of(reply: bytes) -> int:
    """The transaction id in TRANSACTION_START's reply (decimal, NUL-terminated)."""
    return int(reply.rstrip(b"\0"))


def transaction_end_payload(commit: bool) -> bytes:
    """TRANSACTION_END's payload: ``T`` commits, ``F`` aborts."""
    return b"T\0" if commit else b"F\0"


def domain_path_of(reply: bytes) -> str:
    """The path in GET_DOMAIN_PATH's reply."""
    return reply.rstrip(b"\0").decode()


def watch_payload(wpath: str, token: str, depth: int | None = None) -> bytes:
    """WATCH's payload: ``wpath\\0token\\0``, with ``depth\\0`` after them if given."""
    if depth is None:
        return join(wpath, token)
    return join(wpath, token, str(depth))


def unwatch_payload(wpath: str, token: str) -> bytes:
    """UNWATCH's payload: ``wpath\\0token\\0``."""
    return join(wpath, token)


class WatchEvent(tuple[str, str]):
    """One WATCH_EVENT: the path that changed (``path``, the daemon's epath) and the
    watch's ``token``; a plain ``(path, token)`` tuple too.

    (Not a typing.NamedTuple: importing typing would double the tools' start-up.)
    """

    __slots__ = ()

    def __new__(cls, path: str, token: str) -> WatchEvent:
        return tuple.__new__(cls, (path, token))

    @property
    def path(self) -> str:
        return self[0]

    @property
    def token(self) -> str:
        return self[1]

    def __repr__(self) -> str:
        return f"WatchEvent(path={self[0]!r}, token={self[1]!r})"


def watch_event_of(payload: bytes) -> WatchEvent | None:
    """The event of a WATCH_EVENT payload, or None if it lacks the path or the token."""
    fields = split(payload)
    if len(fields) < 2:
        return None
    return WatchEvent(fields[0].decode(), fields[1].decode())


#: INTRODUCE's defaults for the guest's xenstore ring: libxl's page
#: (GUEST_MAGIC_BASE + XENSTORE_PFN_OFFSET) and a first event channel. A daemon
#: without Xen (ours) ignores both, as cxenstored 4.17 ignores the frame.
STORE_GFN = 0xFEFFC
STORE_PORT = 1


def domid_payload(domid: int) -> bytes:
    """The payload of RELEASE, RESUME, IS_DOMAIN_INTRODUCED and GET_DOMAIN_PATH."""
    return join(str(domid))


def introduce_payload(domid: int, mfn: int, eventchn: int) -> bytes:
    """INTRODUCE's payload: the domid, its ring's frame, its event channel."""
    return join(str(domid), str(mfn), str(eventchn))


def set_target_payload(domid: int, target: int) -> bytes:
    """SET_TARGET's payload: ``domid`` gets ``target``'s rights."""
    return join(str(domid), str(target))


def introduced_of(reply: bytes) -> bool:
    """IS_DOMAIN_INTRODUCED's reply, ``T`` or ``F``."""
    return reply.rstrip(b"\0") == b"T"


class DirectoryParts:
    """Assembles a listing from DIRECTORY_PART replies, as libxenstore does.

    Ask for :meth:`payload`, feed the reply to :meth:`add`, and repeat until
    :meth:`add` returns the names. When the node changes between two parts (its
    generation count differs) the listing starts again from offset 0.
    """

    def __init__(self, path: str | bytes) -> None:
        self.path = path
        self._listing = b""
        self._generation: bytes | None = None

    def payload(self) -> bytes:
        """The next request: the path and the offset reached so far."""
        return join(self.path, str(len(self._listing)))

    def add(self, reply: bytes) -> list[str] | None:
        """Take one reply; return the complete listing, or None when more is needed."""
        gen, _, body = reply.partition(b"\0")
        if self._generation is None:
            self._generation = gen
        elif gen != self._generation:
            # The node changed between parts: start again.
            self._listing = b""
            self._generation = None
            return None
        self._listing += body
        listing = self._listing
        # The last part ends with an empty name, i.e. an extra NUL.
        if len(listing) <= 1 or listing[-2] == 0:
            return listing_names(listing[:-1])
        return None

    def unsupported(self) -> errors.XenStoreError:
        """What to raise when the daemon answers DIRECTORY_PART with ENOSYS."""
        error = errors.E2BIG("directory too big and DIRECTORY_PART unsupported")
        return located(error, Op.DIRECTORY, join(self.path))
