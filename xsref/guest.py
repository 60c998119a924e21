"""Play an unprivileged guest of a reference daemon, over a shared ring.

On Xen a guest talks to xenstored through one shared page (two byte rings,
``struct xenstore_domain_interface``) and an event channel. When the launcher
starts a reference daemon, ``shim.c`` makes both visible in the daemon's state
directory (:attr:`~xsref.launcher.ReferenceDaemon.state_dir`):

* ``ring-<domid>``: the 4096-byte page, mapped shared by the daemon at
  INTRODUCE: ``req[1024]`` (guest to daemon), ``rsp[1024]`` (daemon to guest),
  then ``req_cons``, ``req_prod``, ``rsp_cons``, ``rsp_prod`` as little-endian
  u32 at offsets 2048..2063, free-running, used modulo 1024;
* ``port-<domid>``: the daemon's port for the domain, in decimal; written at
  INTRODUCE and removed at RELEASE;
* ``evtchn``: a FIFO the daemon polls. A guest writes its port there (4 bytes)
  after it put bytes into ``req`` or took bytes out of ``rsp``, to wake it.

The daemon's notifications to the guest are not delivered, so a
:class:`GuestRing` polls the indexes with short sleeps, and every wait has a
deadline: a guest never hangs a test. The ring is a byte stream exactly like
the daemon's Unix socket, so :class:`~xenstore.client.Client` runs over it
unchanged (``Client(stream=GuestRing(...))``, or
:meth:`ReferenceDaemon.guest <xsref.launcher.ReferenceDaemon.guest>`).

The domain must have been introduced by dom0 first (:func:`introduce`, or an
INTRODUCE request of your own on the daemon's socket); a toolstack also gives
it a home, ``/local/domain/<domid>``, that it may write. After dom0 RELEASEs
it, reads from the ring end (the client sees the connection reset) and writes
fail.

Plain loads and stores on the shared page are ordered enough on x86, where
these daemons run; this module is not meant for weaker memory models.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import time
from collections import deque
from types import TracebackType
from typing import Final, Protocol

from xenstore.protocol.codec import Framer, Packet, encode_parts, join
from xenstore.protocol.ops import Op

#: Bytes in the shared page, and in each of its two rings (XENSTORE_RING_SIZE).
PAGE_BYTES: Final = 4096
RING_SIZE: Final = 1024
#: Offsets of the rings and of the four indexes in the page.
REQ_OFFSET: Final = 0
RSP_OFFSET: Final = 1024
REQ_CONS: Final = 2048
REQ_PROD: Final = 2052
RSP_CONS: Final = 2056
RSP_PROD: Final = 2060

#: What cxenstored ignores (the guest frame number: the shim maps by domid)
#: and the smallest remote port it accepts (it answers EINVAL to a port of 0).
DEFAULT_GFN: Final = 0
DEFAULT_REMOTE_PORT: Final = 1

_INDEX: Final = struct.Struct("<I")
_PORT: Final = struct.Struct("=I")  # the event channel device speaks native endian
#: Waits poll the ring with sleeps growing from the first to the last.
_FIRST_SLEEP: Final = 0.00005
_LAST_SLEEP: Final = 0.002
#: How often a waiting guest checks that it has not been released.
_ALIVE_EVERY: Final = 0.02


class _Requester(Protocol):
    def request(self, op: Op, payload: bytes, tx: int = 0) -> bytes: ...


def introduce(
    dom0: _Requester,
    domid: int,
    gfn: int = DEFAULT_GFN,
    port: int = DEFAULT_REMOTE_PORT,
) -> None:
    """Send ``INTRODUCE <domid> <gfn> <port>`` as dom0 (e.g. a socket :class:`Client`).

    Under the shim the gfn is ignored and the port only has to be positive;
    the daemon then maps ``ring-<domid>`` and a guest can connect.
    """
    dom0.request(Op.INTRODUCE, join(str(domid), str(gfn), str(port)))


def release(dom0: _Requester, domid: int) -> None:
    """Send ``RELEASE <domid>`` as dom0: the guest's ring goes dead."""
    dom0.request(Op.RELEASE, join(str(domid)))


class GuestRing:
    """The ring of introduced domain ``domid``: a blocking byte stream with deadlines.

    ``recv``, ``sendall`` and ``close`` make it the stream a
    :class:`~xenstore.client.Client` needs. ``recv`` waits at most
    :attr:`timeout` seconds for a reply and raises :class:`TimeoutError` after
    that (set :attr:`timeout` lower to check that nothing arrives); it returns
    ``b""`` (end of stream) once the domain has been released and the ring
    drained. ``sendall`` raises :class:`TimeoutError` if the daemon does not make
    room in time and :class:`ConnectionResetError` once the domain is released.

    Raises :class:`FileNotFoundError` if the domain is not introduced, and
    :class:`ConnectionRefusedError` if no daemon is listening on the event channel.
    """

    def __init__(self, state_dir: str, domid: int, timeout: float = 5.0) -> None:
        self.state_dir = state_dir
        self.domid = domid
        self.timeout = timeout
        self.ring_path = os.path.join(state_dir, f"ring-{domid}")
        self.port_path = os.path.join(state_dir, f"port-{domid}")
        port = self._read_port()
        if port is None:
            raise FileNotFoundError(
                errno.ENOENT,
                f"domain {domid} is not introduced (no {self.port_path}): "
                "dom0 must INTRODUCE it first",
            )
        #: The daemon's event channel port for this domain (what pokes name).
        self.port = port
        fd = os.open(self.ring_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._inode = os.fstat(fd).st_ino
            self._page = mmap.mmap(fd, PAGE_BYTES, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        try:
            # Non-blocking: fails (ENXIO) at once if no daemon has it open.
            self._evtchn = os.open(
                os.path.join(state_dir, "evtchn"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except OSError as exc:
            self._page.close()
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"no daemon serves {state_dir}: {exc}"
            ) from exc
        self._closed = False
        self._framer = Framer()
        self._received: deque[Packet] = deque()
        self._next_req_id = 1
        #: Watch events that arrived while :meth:`request` awaited a reply.
        self.events: list[Packet] = []

    def __repr__(self) -> str:
        return f"<GuestRing domid={self.domid} port={self.port} {self.ring_path!r}>"

    # -- the stream ------------------------------------------------------------

    def sendall(self, data: bytes, /) -> None:
        """Put ``data`` in the request ring, waiting for room, and wake the daemon."""
        view = memoryview(data)
        waiter = _Waiter(self.timeout)
        while view:
            if not self.alive():
                raise ConnectionResetError(errno.ECONNRESET, f"domain {self.domid} was released")
            cons, prod = self._index(REQ_CONS), self._index(REQ_PROD)
            used = (prod - cons) & 0xFFFFFFFF
            if used > RING_SIZE:
                raise OSError(errno.EIO, f"request ring of domain {self.domid} is corrupt")
            room = RING_SIZE - used
            if room == 0:
                self._poke()
                waiter.wait(f"the daemon to read domain {self.domid}'s requests")
                continue
            start = prod % RING_SIZE
            count = min(room, RING_SIZE - start, len(view))
            self._page[REQ_OFFSET + start : REQ_OFFSET + start + count] = view[:count]
            _INDEX.pack_into(self._page, REQ_PROD, (prod + count) & 0xFFFFFFFF)
            view = view[count:]
            self._poke()
            waiter = _Waiter(self.timeout)

    def recv(self, bufsize: int, /) -> bytes:
        """Up to ``bufsize`` bytes of the daemon's output; ``b""`` once released."""
        waiter = _Waiter(self.timeout)
        last_check = time.monotonic()
        while True:
            cons, prod = self._index(RSP_CONS), self._index(RSP_PROD)
            available = (prod - cons) & 0xFFFFFFFF
            if available > RING_SIZE:
                raise OSError(errno.EIO, f"reply ring of domain {self.domid} is corrupt")
            if available:
                start = cons % RING_SIZE
                count = min(available, RING_SIZE - start, bufsize)
                data = self._page[RSP_OFFSET + start : RSP_OFFSET + start + count]
                _INDEX.pack_into(self._page, RSP_CONS, (cons + count) & 0xFFFFFFFF)
                self._poke()  # the daemon may be waiting for room to write more
                return data
            if time.monotonic() - last_check >= _ALIVE_EVERY:
                if not self.alive():
                    return b""
                if self._index(REQ_CONS) != self._index(REQ_PROD):
                    # Our requests are still unread: notify again, in case a poke
                    # was lost (a spare one costs the daemon one look at its rings).
                    self._poke()
                last_check = time.monotonic()
            waiter.wait(f"a reply on domain {self.domid}'s ring")

    def close(self) -> None:
        """Unmap the ring and close the event channel; the domain stays introduced."""
        if self._closed:
            return
        self._closed = True
        os.close(self._evtchn)
        self._page.close()

    def __enter__(self) -> GuestRing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- a raw request, without a Client -----------------------------------------

    def request(self, op: Op | int, payload: bytes, tx: int = 0) -> tuple[int, bytes]:
        """Send one request; return the reply's ``(op, payload)``, errors included.

        An ERROR reply comes back as ``(Op.ERROR, b"EACCES\\0")`` rather than
        raised. Watch events that arrive meanwhile are kept in :attr:`events`.
        Do not mix this with a :class:`~xenstore.client.Client` on the same ring.
        """
        req_id = self._next_req_id
        self._next_req_id = (req_id + 1) & 0xFFFFFFFF
        self.sendall(encode_parts(op, req_id, tx, payload))
        while True:
            while self._received:
                packet = self._received.popleft()
                if packet.op == Op.WATCH_EVENT:
                    self.events.append(packet)
                elif packet.req_id == req_id:
                    return packet.op, packet.payload
            data = self.recv(PAGE_BYTES)
            if not data:
                raise ConnectionResetError(errno.ECONNRESET, f"domain {self.domid} was released")
            self._received.extend(self._framer.feed(data))

    # -- state ---------------------------------------------------------------------

    def alive(self) -> bool:
        """Whether the domain is still introduced with this ring and port.

        False after RELEASE (the port file is gone) and after a new INTRODUCE
        of the domain (a new ring file or port), which resets the ring.
        """
        if self._closed or self._read_port() != self.port:
            return False
        try:
            return os.stat(self.ring_path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def _read_port(self) -> int | None:
        try:
            with open(self.port_path, "rb") as file:
                text = file.read()
        except FileNotFoundError:
            return None
        return int(text) if text.strip().isdigit() else None

    def _index(self, offset: int) -> int:
        value: int = _INDEX.unpack_from(self._page, offset)[0]
        return value

    def _poke(self) -> None:
        """Tell the daemon to look at the rings, as a guest's event channel notify would."""
        try:
            os.write(self._evtchn, _PORT.pack(self.port))
        except BlockingIOError:
            pass  # the FIFO is full of pokes the daemon has yet to read: it will wake
        except BrokenPipeError as exc:
            raise ConnectionResetError(errno.ECONNRESET, "the daemon has gone") from exc


class _Waiter:
    """Sleeps between looks at the ring, growing the sleep; TimeoutError past a deadline."""

    __slots__ = ("_deadline", "_sleep")

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._sleep = _FIRST_SLEEP

    def wait(self, what: str) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(min(self._sleep, remaining))
        self._sleep = min(self._sleep * 2, _LAST_SLEEP)


__all__ = [
    "DEFAULT_GFN",
    "DEFAULT_REMOTE_PORT",
    "PAGE_BYTES",
    "RING_SIZE",
    "GuestRing",
    "introduce",
    "release",
]
