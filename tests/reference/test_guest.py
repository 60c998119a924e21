"""An unprivileged guest talking to the reference daemon over its ring.

dom0 (the socket) plays the toolstack: it gives domain 5 a home it owns,
``/local/domain/5`` with perms ``n5``, and INTRODUCEs it; the guest then talks
over ``ring-5`` in the daemon's state directory (see
:mod:`xsref.guest`). These pin down how cxenstored 4.17 treats a
guest, which our daemon's guest sockets must match.

Skipped with the reason on a machine that cannot run the reference, unless
``XS_REQUIRE_REFERENCE=1`` makes that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import reference_daemon
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op
from xsref import ReferenceDaemon
from xsref.guest import GuestRing, introduce, release

DOMID = 5
HOME = f"/local/domain/{DOMID}"
#: Every wait on a ring gives up after this long: a guest never hangs a test.
TIMEOUT = 5.0


def make_home(dom0: Client, domid: int) -> None:
    """What a toolstack does before INTRODUCE: a home the guest owns."""
    dom0.write(f"/local/domain/{domid}", "")
    dom0.set_perms(f"/local/domain/{domid}", [f"n{domid}"])


@pytest.fixture(params=["c"])
def ref(request: pytest.FixtureRequest) -> Iterator[ReferenceDaemon]:
    yield from reference_daemon(request.param)


@pytest.fixture
def dom0(ref: ReferenceDaemon) -> Iterator[Client]:
    with Client(ref.socket_path, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def guest(ref: ReferenceDaemon, dom0: Client) -> Iterator[Client]:
    make_home(dom0, DOMID)
    introduce(dom0, DOMID)
    with ref.guest(DOMID, timeout=TIMEOUT) as client:
        yield client


# -- the ring itself ----------------------------------------------------------------


@pytest.mark.parametrize("ref", ["c", "o"], indirect=True)
def test_both_daemons_serve_a_guest(ref: ReferenceDaemon, dom0: Client) -> None:
    make_home(dom0, DOMID)
    introduce(dom0, DOMID)
    with ref.guest(DOMID, timeout=TIMEOUT) as guest:
        guest.write("name", "five")
        assert guest.read("name") == b"five"
    assert dom0.read(f"{HOME}/name") == b"five"


def test_files_appear_at_introduce(ref: ReferenceDaemon, dom0: Client) -> None:
    assert os.path.exists(os.path.join(ref.state_dir, "evtchn"))
    assert not os.path.exists(os.path.join(ref.state_dir, f"ring-{DOMID}"))
    with pytest.raises(FileNotFoundError, match="not introduced"):
        GuestRing(ref.state_dir, DOMID)
    introduce(dom0, DOMID)
    assert os.path.getsize(os.path.join(ref.state_dir, f"ring-{DOMID}")) == 4096
    with open(os.path.join(ref.state_dir, f"port-{DOMID}")) as port:
        assert int(port.read()) > 0


def test_raw_requests_return_errors_as_replies(ref: ReferenceDaemon, dom0: Client) -> None:
    make_home(dom0, DOMID)
    introduce(dom0, DOMID)
    with GuestRing(ref.state_dir, DOMID, timeout=TIMEOUT) as ring:
        assert ring.request(Op.GET_DOMAIN_PATH, join(str(DOMID))) == (
            Op.GET_DOMAIN_PATH,
            HOME.encode() + b"\0",
        )
        assert ring.request(Op.READ, join("/local")) == (Op.ERROR, b"EACCES\0")


def test_requests_and_replies_larger_than_the_ring(guest: Client, dom0: Client) -> None:
    value = bytes(range(256)) * 7  # 1792 bytes: wraps the 1024-byte rings
    for _ in range(3):
        guest.write("big", value)
        assert guest.read("big") == value
    assert dom0.read(f"{HOME}/big") == value


def test_waits_end_at_the_timeout(ref: ReferenceDaemon, dom0: Client) -> None:
    make_home(dom0, DOMID)
    introduce(dom0, DOMID)
    ring = GuestRing(ref.state_dir, DOMID, timeout=TIMEOUT)
    with Client(stream=ring) as guest:
        guest.watch("name", "tok")
        assert guest.read_watch() == ("name", "tok")
        ring.timeout = 0.2
        with pytest.raises(TimeoutError):
            guest.read_watch()  # nothing changes: no event
        ring.timeout = TIMEOUT
        guest.write("name", "x")  # the ring still works after a timeout
        assert guest.read_watch() == ("name", "tok")


# -- how the reference treats a guest -------------------------------------------------


def test_relative_paths_are_below_the_home(guest: Client, dom0: Client) -> None:
    guest.write("name", "five")
    assert dom0.read(f"{HOME}/name") == b"five"
    assert guest.read(f"{HOME}/name") == b"five"
    assert guest.get_domain_path(DOMID) == HOME


def test_local_and_dom0_nodes_are_unreadable(guest: Client, dom0: Client) -> None:
    dom0.write("/secret", "s")  # owned by dom0, no ACL entries: "n0"
    for path in ("/", "/local", "/local/domain", "/secret"):
        with pytest.raises(errors.EACCES):
            guest.read(path)
    # EACCES hides whether a node exists below an unreadable parent...
    with pytest.raises(errors.EACCES):
        guest.read("/secret/missing")
    # ...but below its own home a missing node is ENOENT.
    with pytest.raises(errors.ENOENT):
        guest.read("missing")


def test_created_nodes_are_owned_by_the_guest(guest: Client, dom0: Client) -> None:
    dom0.set_perms(HOME, [f"n{DOMID}", "r0"])
    guest.write("device/vif/0", "x")  # three levels at once
    for path in ("device", "device/vif", "device/vif/0"):
        assert guest.get_perms(path) == [f"n{DOMID}", "r0"]
    # Outside its home: a node anyone may write, "b0", gives "b5".
    dom0.write("/shared", "")
    dom0.set_perms("/shared", ["b0"])
    guest.write("/shared/mine", "x")
    assert dom0.get_perms("/shared/mine") == [f"b{DOMID}"]


def test_creation_needs_write_not_read_on_the_parent(guest: Client, dom0: Client) -> None:
    dom0.write("/readonly", "")
    dom0.set_perms("/readonly", ["r0"])
    with pytest.raises(errors.EACCES):
        guest.write("/readonly/x", "v")
    dom0.write("/dropbox", "")
    dom0.set_perms("/dropbox", ["n0", f"w{DOMID}"])
    guest.write("/dropbox/x", "v")
    assert dom0.get_perms("/dropbox/x") == [f"n{DOMID}", f"w{DOMID}"]
    with pytest.raises(errors.EACCES):
        guest.read("/dropbox")


def test_set_perms(guest: Client, dom0: Client) -> None:
    guest.write("name", "five")
    guest.set_perms("name", [f"n{DOMID}", "r0", "w6"])  # the owner may change the ACL
    assert guest.get_perms("name") == [f"n{DOMID}", "r0", "w6"]
    for owner in ("n6", "n0"):
        with pytest.raises(errors.EPERM):  # but not give the node away
            guest.set_perms("name", [owner])
    dom0.write("/shared", "")
    dom0.set_perms("/shared", ["b0"])
    with pytest.raises(errors.EACCES):  # writing a node is not owning it
        guest.set_perms("/shared", ["b0"])


def test_rm_needs_write_on_the_node(guest: Client, dom0: Client) -> None:
    dom0.write(f"{HOME}/fixed", "")
    dom0.set_perms(f"{HOME}/fixed", ["n0", f"r{DOMID}"])
    with pytest.raises(errors.EACCES):
        guest.rm("fixed")
    guest.write("mine", "")
    guest.rm("mine")
    assert not dom0.exists(f"{HOME}/mine")


def test_watch_with_a_relative_path(guest: Client, dom0: Client) -> None:
    guest.write("name", "five")
    guest.watch("name", "tok")
    assert guest.read_watch() == ("name", "tok")  # fires at once, relative
    dom0.write(f"{HOME}/name", "changed")
    assert guest.read_watch() == ("name", "tok")
    guest.write("name/sub", "x")
    assert guest.read_watch() == ("name/sub", "tok")


def test_no_events_for_nodes_the_guest_cannot_read(guest: Client, dom0: Client) -> None:
    dom0.write("/secret", "s")
    guest.watch("/secret", "s")
    assert guest.read_watch() == ("/secret", "s")  # the first event fires regardless
    guest.watch("name", "n")
    assert guest.read_watch() == ("name", "n")
    dom0.write("/secret", "changed")
    dom0.write(f"{HOME}/name", "x")
    assert guest.read_watch() == ("name", "n")  # nothing for /secret came before it


def test_domain_requests_are_for_dom0(guest: Client) -> None:
    for op, fields in [
        (Op.INTRODUCE, ("7", "0", "1")),
        (Op.RELEASE, (str(DOMID),)),
        (Op.SET_TARGET, (str(DOMID), "6")),
        (Op.IS_DOMAIN_INTRODUCED, (str(DOMID),)),
        (Op.CONTROL, ("help",)),
    ]:
        with pytest.raises(errors.EACCES):
            guest.request(op, join(*fields))


def test_release_kills_the_ring(ref: ReferenceDaemon, guest: Client, dom0: Client) -> None:
    guest.write("name", "five")
    dom0.watch("@releaseDomain", "rel")
    assert dom0.read_watch() == ("@releaseDomain", "rel")
    release(dom0, DOMID)
    assert dom0.read_watch() == ("@releaseDomain", "rel")
    assert dom0.request(Op.IS_DOMAIN_INTRODUCED, join(str(DOMID))) == b"F\0"
    for name in (f"ring-{DOMID}", f"port-{DOMID}"):
        assert not os.path.exists(os.path.join(ref.state_dir, name))
    with pytest.raises(ConnectionResetError):
        guest.read("name")
    # cxenstored removes the nodes the domain owned: its home, and all below.
    assert not dom0.exists(HOME)
    with pytest.raises(errors.ENOENT):
        release(dom0, DOMID)
