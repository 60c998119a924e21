"""The domain-management ops, as a toolstack sends them, against cxenstored 4.17.

Each scenario is sent to our daemon and to cxenstored (a fresh one each, from
the reference launcher); every step lists cxenstored's answer and, where we
deliberately differ (README, *Deliberate differences*), ours. An answer is the
reply's payload without its NUL, or the error's name, then ``+i`` or ``+r``
when a dom0 watcher of ``@introduceDomain`` or ``@releaseDomain`` got an event.

cxenstored reads every domid with atoi(): ``abc`` and the empty string are 0,
``5x`` is 5, ``-1`` is 4294967295; it ignores INTRODUCE's gfn and any fields
after the event channel, and SET_TARGET's after the target. Under the
launcher's stand-in hypervisor every domid exists, so it introduces reserved
ids too. We take a domid only as a toolstack writes one (decimal, below 2**32)
and never introduce a reserved id; everything else is answered alike.

The over-a-ring part (the last tests) plays a guest: on cxenstored over its
shared ring (:mod:`xsref.guest`), on ours over its socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from tests.conftest import OurDaemon, reference_daemon
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op
from xsref import ReferenceDaemon

IN, RL, RS = Op.INTRODUCE, Op.RELEASE, Op.RESUME
ST, ID, GP = Op.SET_TARGET, Op.IS_DOMAIN_INTRODUCED, Op.GET_DOMAIN_PATH
TIMEOUT = 5.0


def a(*fields: str) -> bytes:
    """A payload of NUL-terminated fields."""
    return join(*fields)


class Step(NamedTuple):
    op: Op
    payload: bytes
    cxenstored: str
    #: Our answer where it deliberately differs from cxenstored's.
    ours: str | None = None


SCENARIOS: dict[str, list[Step]] = {
    "introduce": [
        Step(IN, a("5", "0", "1"), "OK +i"),
        Step(IN, a("5", "0", "1"), "OK"),  # again: no second @introduceDomain
        Step(IN, a("5", "99", "2"), "OK"),  # another page: 4.17 ignores it
        Step(IN, a("5", "0", "0"), "EINVAL"),  # an event channel of 0
        Step(ID, a("5"), "T"),
        # <domid>|<gfn>|<evtchn>|? : a signed gfn, old xend's fourth field, a tail.
        Step(IN, a("6", "-4096", "1", "/local/domain/6"), "OK +i"),
        Step(IN, b"7\x000\x001\x00tail", "OK +i"),
        Step(IN, a("0", "0", "1"), "OK"),  # dom0 is introduced from the start: no event
        Step(IN, a("0", "4096", "7"), "OK"),
        Step(IN, a("0", "0", "0"), "EINVAL"),
        Step(ID, a("0"), "T"),
        Step(IN, a("8", "0"), "EINVAL"),
        Step(IN, b"", "EINVAL"),
        Step(IN, b"8\x000\x001", "EINVAL"),  # the event channel is not terminated
        Step(IN, a("8", "0", "abc"), "EINVAL"),
        Step(ID, a("8"), "F"),
    ],
    "introduce-garbage": [
        Step(IN, a("abc", "0", "1"), "OK", "EINVAL"),  # atoi: dom0
        Step(IN, a("7x", "0", "1"), "OK +i", "EINVAL"),  # atoi: 7
        Step(ID, a("7"), "T", "F"),
        Step(IN, a(" 8", "0", "1"), "OK +i", "EINVAL"),
        Step(IN, a("+9", "0", "1"), "OK +i", "EINVAL"),
        Step(IN, a("-1", "0", "1"), "OK +i", "EINVAL"),  # 4294967295
        Step(IN, a("10", "x", "1"), "OK +i", "EINVAL"),  # the gfn is ignored
        Step(IN, a("11", "0", "-1"), "OK +i", "EINVAL"),  # port 4294967295
        Step(ID, a("11"), "T", "F"),
    ],
    "reserved": [
        Step(IN, a("32752", "0", "1"), "OK +i", "EINVAL"),  # DOMID_SELF
        Step(ID, a("32752"), "T"),  # always T: "the caller itself"
        Step(IN, a("32753", "0", "1"), "OK +i", "EINVAL"),
        Step(ID, a("32753"), "T", "F"),
        Step(RL, a("32753"), "OK +r", "ENOENT"),
        Step(ID, a("32753"), "F"),
        Step(IN, a("65536", "0", "1"), "OK +i", "EINVAL"),
        Step(RL, a("65537"), "ENOENT"),
        Step(ID, a("100000"), "F"),
        Step(ID, a("4294967295"), "F"),
        Step(ST, a("32754", "0"), "ENOENT"),
    ],
    "release-resume": [
        Step(RL, a("5"), "ENOENT"),
        Step(RS, a("5"), "ENOENT"),
        Step(RL, a("0"), "EINVAL"),
        Step(RS, a("0"), "EINVAL"),
        Step(RL, a("00"), "EINVAL"),
        Step(IN, a("5", "0", "1"), "OK +i"),
        Step(RS, a("5"), "OK"),
        Step(RS, a("5x"), "OK", "EINVAL"),  # atoi: 5
        Step(RL, a("5x"), "OK +r", "EINVAL"),
        Step(RL, a("5"), "ENOENT", "OK +r"),  # so ours releases it only now
        Step(RL, a("5"), "ENOENT"),  # twice
        Step(RS, a("5"), "ENOENT"),
        Step(ID, a("5"), "F"),
        Step(IN, a("12", "0", "1"), "OK +i"),
        Step(RL, a("012"), "OK +r"),
        Step(ID, a("12"), "F"),
        Step(RL, a("abc"), "EINVAL"),  # atoi: 0
        Step(RL, a(""), "EINVAL"),
        Step(RL, b"", "EINVAL"),
        Step(RL, b"5", "EINVAL"),
        Step(RL, a("5", "6"), "EINVAL"),
        Step(RL, a("-1"), "ENOENT", "EINVAL"),
        Step(RL, a(" 5"), "ENOENT", "EINVAL"),
        Step(RL, a("100000"), "ENOENT"),
        Step(RS, a("abc"), "EINVAL"),
        Step(RS, a(""), "EINVAL"),
        Step(RS, a("-1"), "ENOENT", "EINVAL"),
        Step(RS, a(" 5"), "ENOENT", "EINVAL"),
        Step(RS, a("5", "6"), "EINVAL"),
    ],
    "set-target": [
        Step(IN, a("5", "0", "1"), "OK +i"),
        Step(IN, a("6", "0", "1"), "OK +i"),
        Step(ST, a("5", "6"), "OK"),
        Step(ST, a("5", "7"), "ENOENT"),  # the target must be introduced too
        Step(ST, a("7", "5"), "ENOENT"),
        Step(ST, a("5", "0"), "OK"),  # dom0 is introduced
        Step(ST, a("0", "5"), "OK"),
        Step(ST, a("0", "0"), "OK"),
        Step(ST, a("0", "7"), "ENOENT"),
        Step(ST, a("7", "0"), "ENOENT"),
        Step(ST, a("5", "5"), "OK"),
        Step(ST, a("32752", "5"), "ENOENT"),
        Step(ST, a("5"), "EINVAL"),
        Step(ST, b"", "EINVAL"),
        Step(ST, b"5\x006", "EINVAL"),
        Step(ST, a("5", "6", "7"), "OK", "EINVAL"),
        Step(ST, a("abc", "5"), "OK", "EINVAL"),  # atoi: 0
        Step(ST, a("5", "abc"), "OK", "EINVAL"),
        Step(ST, a("5x", "6"), "OK", "EINVAL"),
        Step(ST, a("-1", "5"), "ENOENT", "EINVAL"),
    ],
    "is-domain-introduced": [
        Step(ID, a("0"), "T"),
        Step(ID, a("00"), "T"),
        Step(ID, a("9"), "F"),
        Step(ID, a("abc"), "T", "EINVAL"),  # atoi: dom0
        Step(ID, a(""), "T", "EINVAL"),
        Step(ID, a("-1"), "F", "EINVAL"),
        Step(ID, a("5x"), "F", "EINVAL"),
        Step(ID, b"", "EINVAL"),
        Step(ID, a("5", "6"), "EINVAL"),
        Step(ID, b"5", "EINVAL"),
    ],
    "get-domain-path": [  # our atoi() is cxenstored's: all alike
        Step(GP, a("5"), "/local/domain/5"),
        Step(GP, a("abc"), "/local/domain/0"),
        Step(GP, a(""), "/local/domain/0"),
        Step(GP, a("-1"), "/local/domain/4294967295"),
        Step(GP, a("5x"), "/local/domain/5"),
        Step(GP, a(" 7"), "/local/domain/7"),
        Step(GP, a("99999"), "/local/domain/99999"),
        Step(GP, a("4294967296"), "/local/domain/0"),
        Step(GP, b"", "EINVAL"),
        Step(GP, b"5", "EINVAL"),
        Step(GP, a("5", "6"), "EINVAL"),
    ],
}


class Raw:
    """A dom0 connection speaking packets; watch events are kept aside."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.framer = Framer()
        self.events: list[bytes] = []
        self.req_id = 0

    def request(self, op: Op, payload: bytes) -> Packet:
        self.req_id += 1
        self.sock.sendall(encode(Packet(op, self.req_id, 0, payload)))
        while True:
            for packet in self.framer.feed(self.sock.recv(65536)):
                if packet.op == Op.WATCH_EVENT:
                    self.events.append(packet.payload)
                else:
                    assert packet.req_id == self.req_id
                    return packet

    def close(self) -> None:
        self.sock.close()


def answer(reply: Packet, events: list[bytes]) -> str:
    text = reply.payload.rstrip(b"\0").decode()
    for event in events:
        text += {b"@introduceDomain\0i\0": " +i", b"@releaseDomain\0r\0": " +r"}[event]
    return text


@pytest.fixture(params=["ours", "cxenstored"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def daemon(kind: str) -> Iterator[tuple[str, ReferenceDaemon | None]]:
    """(socket path, the reference daemon or None for ours), a fresh daemon."""
    if kind == "ours":
        ours = OurDaemon("--domain-dir", None)
        try:
            yield ours.socket_path, None
        finally:
            ours.stop()
    else:
        for ref in reference_daemon("c"):
            yield ref.socket_path, ref


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_domain_ops(scenario: str, kind: str, daemon: tuple[str, object]) -> None:
    path = daemon[0]
    dom0, watcher = Raw(path), Raw(path)
    try:
        watcher.request(Op.WATCH, a("@introduceDomain", "i"))
        watcher.request(Op.WATCH, a("@releaseDomain", "r"))
        watcher.request(Op.READ, a("/"))  # both first events are in
        watcher.events.clear()
        got, want = [], []
        for step in SCENARIOS[scenario]:
            reply = dom0.request(step.op, step.payload)
            # Whatever the step fired reached the watcher before this reply.
            watcher.request(Op.READ, a("/"))
            got.append(f"{step.op.name} {step.payload!r}: {answer(reply, watcher.events)}")
            watcher.events.clear()
            expected = step.ours if kind == "ours" and step.ours is not None else step.cxenstored
            want.append(f"{step.op.name} {step.payload!r}: {expected}")
        assert got == want
    finally:
        dom0.close()
        watcher.close()


# -- a guest across a re-INTRODUCE and SET_TARGET ---------------------------------------

DOMID = 5
HOME = f"/local/domain/{DOMID}"


class Guests:
    """Connect as domain 5: to our daemon's socket, or over cxenstored's ring."""

    def __init__(self, path: str, ref: ReferenceDaemon | None) -> None:
        self.path, self.ref = path, ref

    def connect(self) -> Client:
        if self.ref is not None:
            return self.ref.guest(DOMID, timeout=TIMEOUT)
        return Client(os.path.join(os.path.dirname(self.path), str(DOMID)), timeout=TIMEOUT)

    def again(self, guest: Client) -> Client:
        """The guest's connection after a re-INTRODUCE. Ours is the same socket; a
        ring guest re-reads its new event channel (the ring and its connection
        inside cxenstored are the same)."""
        if self.ref is None:
            return guest
        guest.close()
        return self.connect()


def no_event(guest: Client) -> bool:
    sock = guest._sock
    if isinstance(sock, socket.socket):
        sock.settimeout(0.3)
    else:
        sock.timeout = 0.3  # type: ignore[attr-defined]  # a GuestRing
    try:
        guest.read_watch()
    except TimeoutError:
        return True
    finally:
        if isinstance(sock, socket.socket):
            sock.settimeout(TIMEOUT)
        else:
            sock.timeout = TIMEOUT  # type: ignore[attr-defined]
    return False


@pytest.fixture
def host(daemon: tuple[str, ReferenceDaemon | None]) -> Iterator[tuple[Client, Guests]]:
    path, ref = daemon
    with Client(path, timeout=TIMEOUT) as dom0:
        dom0.write(HOME, "")
        dom0.set_perms(HOME, [f"n{DOMID}", "r0"])
        dom0.request(Op.INTRODUCE, a(str(DOMID), "0", "1"))
        yield dom0, Guests(path, ref)


def test_reintroduce_resets_the_guest(host: tuple[Client, Guests]) -> None:
    dom0, guests = host
    guest = guests.connect()
    guest.write("name", "five")
    guest.watch("name", "old")
    assert guest.read_watch() == ("name", "old")
    tx = guest.transaction_start()
    guest.write("in-tx", "x", tx=tx)
    assert dom0.request(Op.INTRODUCE, a(str(DOMID), "4242", "3")) == b"OK\0"
    guest = guests.again(guest)
    with pytest.raises(errors.ENOENT):
        guest.read("in-tx", tx=tx)
    assert not dom0.exists(f"{HOME}/in-tx")
    dom0.write(f"{HOME}/name", "changed")
    assert no_event(guest)
    assert guest.read("name") == b"changed"
    guest.watch("name", "new")
    assert guest.read_watch() == ("name", "new")
    tx = guest.transaction_start()
    guest.write("in-tx", "y", tx=tx)
    guest.transaction_end(tx)
    assert dom0.read(f"{HOME}/in-tx") == b"y"
    guest.close()


def test_an_event_channel_of_0_resets_nothing(host: tuple[Client, Guests]) -> None:
    dom0, guests = host
    guest = guests.connect()
    guest.watch("name", "w")
    assert guest.read_watch() == ("name", "w")
    tx = guest.transaction_start()
    with pytest.raises(errors.EINVAL):
        dom0.request(Op.INTRODUCE, a(str(DOMID), "0", "0"))
    dom0.write(f"{HOME}/name", "x")
    assert guest.read_watch() == ("name", "w")
    guest.transaction_end(tx)
    guest.close()


def test_set_target_0_gives_dom0s_rights(host: tuple[Client, Guests]) -> None:
    dom0, guests = host
    dom0.write("/secret", "s")
    guest = guests.connect()
    with pytest.raises(errors.EACCES):
        guest.read("/secret")
    dom0.request(Op.SET_TARGET, a(str(DOMID), "0"))
    assert guest.read("/secret") == b"s"
    guest.write("/secret/mine", "m")
    assert dom0.get_perms("/secret/mine") == [f"n{DOMID}"]
    dom0.request(Op.INTRODUCE, a(str(DOMID), "0", "2"))  # a reset keeps the target
    guest = guests.again(guest)
    assert guest.read("/secret") == b"s"
    guest.close()


def test_the_first_acl_entry_naming_the_domain_or_its_target_decides(
    host: tuple[Client, Guests],
) -> None:
    """cxenstored's perm_for_conn walks the ACL once and stops at the first entry that
    names the domain or its target: with ``n0 r9 w5`` domain 5 targeting 9 only reads."""
    dom0, guests = host
    dom0.request(Op.INTRODUCE, a("9", "0", "1"))
    dom0.request(Op.SET_TARGET, a(str(DOMID), "9"))
    guest = guests.connect()
    for acl, rights in ((["n0", "r9", "w5"], "r"), (["n0", "w5", "r9"], "w"),
                        (["n0", "w9", "r5"], "w"), (["n0", "r5", "w9"], "r"),
                        (["n0", "b7", "w9"], "w")):
        dom0.write("/acl", "v")
        dom0.set_perms("/acl", acl)
        got = ""
        with contextlib.suppress(errors.EACCES):
            guest.read("/acl")
            got += "r"
        with contextlib.suppress(errors.EACCES):
            guest.write("/acl", "w")
            got += "w"
        assert got == rights, acl
    guest.close()
