"""Request payloads and reply parsing shared by the blocking and the trio client.

Sans-I/O: nothing here sends or receives, so :mod:`xenstore.client` and
:mod:`xenstore.aclient` build the same bytes and read replies the same way and
differ only in how they wait. Like the codec, this module must stay free of
trio and construct (the CLI tools import it through the blocking client).
"""

from __future__ import annotations

from xenstore import errors
from xenstore.protocol.codec import join, split
from xenstore.protocol.ops import PAYLOAD_MAX


def check_size(payload: bytes) -> None:
    """Raise :class:`errors.E2BIG` for a payload the daemon would not accept."""
    if len(payload) > PAYLOAD_MAX:
        # libxenstore refuses these too: the daemon would drop the connection.
        raise errors.E2BIG(f"request of {len(payload)} bytes exceeds {PAYLOAD_MAX}")


def error_of(payload: bytes) -> errors.XenStoreError:
    """The typed exception for the payload of an ERROR reply (``b"ENOENT\\0"``)."""
    return errors.from_name(payload.rstrip(b"\0").decode("ascii", "replace"))


def write_payload(path: str, value: bytes | str) -> bytes:
    """WRITE's payload: the path, a NUL, then the value with no terminator."""
    data = value.encode() if isinstance(value, str) else value
    return path.encode() + b"\0" + data


def names_of(reply: bytes) -> list[str]:
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


def watch_event_of(payload: bytes) -> tuple[str, str] | None:
    """``(epath, token)`` of a WATCH_EVENT payload, or None if it lacks either."""
    fields = split(payload)
    if len(fields) < 2:
        return None
    return fields[0].decode(), fields[1].decode()


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
            return names_of(listing[:-1])
        return None

    @staticmethod
    def unsupported() -> errors.E2BIG:
        """What to raise when the daemon answers DIRECTORY_PART with ENOSYS."""
        return errors.E2BIG("directory too big and DIRECTORY_PART unsupported")
