"""One end of a split device: its own directory, its peer's, and the moves of the handshake.

An :class:`End` is what a driver holds: the store client it talks through, the
device's address, which side it is, and helpers that keep to the rules of the
game as Linux's xenbus core plays it:

- every wait is a watch (the daemon's first event makes the current value the
  first one looked at), never a poll, and cancellable like any trio wait;
- every publication of several nodes is one transaction, retried on EAGAIN
  with the client's back-off, so the peer never sees half of it;
- a state is switched only while this end's directory still exists (a switch
  must not re-create a directory the toolstack has just removed);
- a fatal error is reported where Xen's drivers report it (``error`` under the
  device, and ``<own home>/error/<device path>/error``) and the end goes Closing.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fnmatch
import logging
from collections.abc import Callable, Iterable, Mapping

from xenstore import errors
from xenstore.aclient import AsyncClient, AsyncTransaction
from xenstore.xenbus.paths import DeviceAddress, XsPath
from xenstore.xenbus.state import XenbusState

log = logging.getLogger("xenstore.xenbus")

Value = str | bytes | int


class Side(enum.Enum):
    FRONTEND = "frontend"
    BACKEND = "backend"


class PeerGone(Exception):
    """The other end's directory went away while this end waited for it."""


class XenbusError(Exception):
    """A driver's fatal error: reported in the store, and the device goes Closing.

    ``errno_value`` is what Xen's drivers write before the message (``-ENODEV``...).
    """

    def __init__(self, message: str, errno_value: int = errno.EIO) -> None:
        super().__init__(message)
        self.errno_value = errno_value


def encode(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class End:
    """One side of ``address``, as seen through ``xs``."""

    def __init__(self, xs: AsyncClient, address: DeviceAddress, side: Side) -> None:
        self.xs = xs
        self.address = address
        self.side = side
        #: This end's directory, and the other end's.
        self.own = address.backend if side is Side.BACKEND else address.frontend
        self.peer = address.frontend if side is Side.BACKEND else address.backend
        self.error_dir = (address.backend_error if side is Side.BACKEND
                          else address.frontend_error)

    def __repr__(self) -> str:
        return f"<{self.side.value} of {self.address}>"

    # -- reading ---------------------------------------------------------------

    async def read(self, path: str, default: bytes | None = None) -> bytes | None:
        """A node's value, or ``default`` if it does not exist."""
        try:
            return await self.xs.read(path)
        except errors.ENOENT:
            return default

    async def visible(self, path: str) -> bool:
        """Whether ``path`` exists and can be read. A guest sees a removed backend
        directory as EACCES (its parent is not readable to it), so both mean gone."""
        try:
            await self.xs.read(path)
        except (errors.ENOENT, errors.EACCES):
            return False
        return True

    async def read_own(self, name: str) -> bytes | None:
        return await self.read(self.own / name)

    async def read_peer(self, name: str) -> bytes | None:
        return await self.read(self.peer / name)

    async def read_peer_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """The peer's nodes among ``names`` that exist, read in one transaction so
        that they belong together."""
        names = list(names)

        async def read_all(t: AsyncTransaction) -> dict[str, bytes]:
            found = {}
            for name in names:
                with contextlib.suppress(errors.ENOENT):
                    found[name] = await t.read(self.peer / name)
            return found

        return await self.xs.retry(read_all)

    async def state(self) -> XenbusState:
        return XenbusState.parse(await self.read_own("state"))

    async def peer_state(self) -> XenbusState:
        return XenbusState.parse(await self.read_peer("state"))

    # -- waiting -----------------------------------------------------------------

    async def wait(self, path: str, done: Callable[[bytes | None], bool]) -> bytes | None:
        """Wait until ``done(value of path)`` holds (None: no such node); returns the value.

        A watch: its first event is the node as it is now, each later one a change.
        """
        async with self.xs.watch(path) as events:
            async for _ in events:
                value = await self.read(path)
                if done(value):
                    return value
        raise ConnectionResetError("the watch ended")  # the client closed under us

    async def wait_peer_state(self, wanted: Callable[[XenbusState], bool]) -> XenbusState:
        """Wait for the peer's state to satisfy ``wanted``.

        Raises :class:`PeerGone` if the peer's directory is removed meanwhile (its
        state node went and the directory with it): a frontend whose backend
        vanished learns it here instead of waiting for ever.
        """
        gone = False

        def done(raw: bytes | None) -> bool:
            nonlocal gone
            state = XenbusState.parse(raw)
            if wanted(state):
                return True
            gone = raw is None
            return gone

        raw = await self.wait(self.peer / "state", done)
        state = XenbusState.parse(raw)
        if wanted(state):
            return state
        if gone and not await self.visible(self.peer):
            raise PeerGone(f"the {self.other_side.value} of {self.address} is gone "
                           f"({self.peer} was removed)")
        # The state node alone went: keep waiting for it to come back.
        return await self.wait_peer_state(wanted)

    @property
    def other_side(self) -> Side:
        return Side.FRONTEND if self.side is Side.BACKEND else Side.BACKEND

    # -- writing -----------------------------------------------------------------

    async def publish(self, values: Mapping[str, Value],
                      state: XenbusState | None = None, *, replace: Iterable[str] = ()) -> None:
        """Write ``values`` under this end's directory, and then ``state``, in one
        transaction (retried on EAGAIN): the peer sees all of it or none of it.

        ``replace``: shell patterns (``ring-ref*``, ``queue-*``) of this end's nodes
        that ``values`` supersedes: those not written again are removed in the same
        transaction, so an earlier round's ring details never outlive it.
        """
        own = self.own
        patterns = list(replace)

        async def write_all(t: AsyncTransaction) -> None:
            if not await t.exists(own):
                raise PeerGone(f"{own} was removed: not publishing into it")
            if patterns:
                for name in await t.directory(own):
                    if name not in values and any(fnmatch.fnmatchcase(name, p)
                                                  for p in patterns):
                        await t.rm(own / name)
            for name, value in values.items():
                await t.write(_under(own, name), encode(value))
            if state is not None:
                await t.write(own / "state", state.encoded())

        try:
            await self.xs.retry(write_all)
        except errors.EACCES as exc:
            raise XenbusError(
                f"permission denied writing under {own}: this {self.side.value} (through "
                f"its connection) may not write its own device directory; check the "
                f"permissions the toolstack gave it", errno.EACCES) from exc
        if state is not None:
            log.debug("%r: %s", self, state.name)

    async def switch_state(self, state: XenbusState) -> None:
        """Write this end's ``state``, as xenbus_switch_state: only while the
        directory exists, in a transaction."""
        await self.publish({}, state)

    async def fatal(self, error: XenbusError) -> bool:
        """Report ``error`` as Xen's drivers do, then go Closing. False if even that
        failed (this end cannot write its own directory): nothing can go on then."""
        text = f"{error.errno_value} {error}"
        log.warning("%r: %s", self, text)

        async def report(t: AsyncTransaction) -> None:
            await t.write(self.error_dir / "error", text)
            if await t.exists(self.own):
                await t.write(self.own / "error", text)
                await t.write(self.own / "state", XenbusState.Closing.encoded())

        try:
            await self.xs.retry(report)
        except errors.XenStoreError as exc:  # e.g. EACCES on the error path: still say so
            log.warning("%r: could not report the error: %s", self, exc)
            return False
        return True

    async def clear_error(self) -> None:
        """Forget an earlier fatal error (a fresh start of the handshake)."""
        for path in (self.own / "error", self.error_dir):
            with contextlib.suppress(errors.ENOENT, errors.EACCES):
                await self.xs.rm(path)


def _under(base: XsPath, name: str) -> XsPath:
    """``base`` / ``name``, where ``name`` may hold several components (``queue-0/tx-ring-ref``)."""
    path = base
    for part in name.split("/"):
        path = path / part
    return path
