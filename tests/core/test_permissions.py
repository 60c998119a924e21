"""Unprivileged callers in the core, as cxenstored 4.17 treats a guest."""

from __future__ import annotations

import pytest

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.protocol.ops import Op


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def dom0(server: Server) -> Caller:
    return Caller(server)


@pytest.fixture
def guest(server: Server, dom0: Caller) -> Caller:
    # As a toolstack does: the guest's home exists and belongs to it.
    dom0.write("/local/domain/5", "")
    dom0.set_perms("/local/domain/5", "n5", "r0")
    return Caller(server, domid=5, privileged=False)


def test_relative_paths_resolve_to_the_guests_home(guest: Caller, dom0: Caller) -> None:
    guest.write("name", "vm5")
    assert dom0.read("/local/domain/5/name") == b"vm5"
    assert guest.read("/local/domain/5/name") == b"vm5"


def test_guest_owns_what_it_creates_and_copies_its_parents_acl(
    guest: Caller, dom0: Caller
) -> None:
    dom0.set_perms("/local/domain/5", "n5", "r0", "b7")
    guest.write("device/vif/0/state", "1")
    assert dom0.get_perms("/local/domain/5/device") == ["n5", "r0", "b7"]
    assert dom0.get_perms("/local/domain/5/device/vif/0/state") == ["n5", "r0", "b7"]


def test_dom0_creations_keep_the_parents_owner(dom0: Caller) -> None:
    dom0.write("/vm", "")
    dom0.set_perms("/vm", "n3", "r4")
    dom0.write("/vm/a/b", "x")
    assert dom0.get_perms("/vm/a/b") == ["n3", "r4"]


def test_root_and_local_are_unreadable_to_a_guest(guest: Caller) -> None:
    assert guest.error(Op.READ, "/") == "EACCES"
    assert guest.error(Op.DIRECTORY, "/local") == "EACCES"
    assert guest.error(Op.DIRECTORY, "/local/domain") == "EACCES"


def test_eacces_hides_existence(guest: Caller, dom0: Caller) -> None:
    dom0.write("/secret/a", "x")
    # Existing and missing nodes under an unreadable parent look alike.
    assert guest.error(Op.READ, "/secret/a") == "EACCES"
    assert guest.error(Op.READ, "/secret/missing") == "EACCES"
    assert guest.error(Op.READ, "/nowhere/at/all") == "EACCES"
    # Under its own home a missing node is plainly missing.
    assert guest.error(Op.READ, "missing") == "ENOENT"


def test_acl_entries_override_the_owners_default(guest: Caller, dom0: Caller) -> None:
    dom0.write("/shared", "v")
    dom0.set_perms("/shared", "n0", "r5")
    assert guest.read("/shared") == b"v"
    assert guest.error(Op.WRITE, "/shared", "x") == "EACCES"
    dom0.set_perms("/shared", "r0", "n5")  # default read, but not for 5
    assert guest.error(Op.READ, "/shared") == "EACCES"
    dom0.set_perms("/shared", "b0")  # everyone may read and write
    guest.write("/shared", "mine")
    assert dom0.read("/shared") == b"mine"


def test_writing_under_a_readonly_parent_is_refused(guest: Caller, dom0: Caller) -> None:
    dom0.write("/ro", "")
    dom0.set_perms("/ro", "r0")
    assert guest.error(Op.WRITE, "/ro/new", "x") == "EACCES"
    assert guest.error(Op.MKDIR, "/ro/new") == "EACCES"
    assert guest.error(Op.MKDIR, "/ro") == "EACCES"  # existing: needs write access
    assert dom0.error(Op.READ, "/ro/new") == "ENOENT"


def test_only_the_owner_changes_perms_and_never_the_owner(guest: Caller, dom0: Caller) -> None:
    dom0.write("/theirs", "")
    dom0.set_perms("/theirs", "b0")
    assert guest.error(Op.SET_PERMS, "/theirs", "b0", "r5") == "EACCES"
    guest.write("mine", "")
    guest.set_perms("mine", "n5", "r7")
    assert dom0.get_perms("/local/domain/5/mine") == ["n5", "r7"]
    assert guest.error(Op.SET_PERMS, "mine", "n7") == "EPERM"
    dom0.set_perms("/local/domain/5/mine", "n7")  # dom0 may give it away
    assert guest.error(Op.READ, "mine") == "EACCES"


def test_set_target_rights_act_for_the_target(server: Server, dom0: Caller) -> None:
    dom0.write("/local/domain/8/x", "v")
    dom0.set_perms("/local/domain/8/x", "n8")
    stubdom = Caller(server, domid=9, privileged=False)
    assert stubdom.error(Op.READ, "/local/domain/8/x") == "EACCES"
    server.connections[stubdom.conn_id].target = 8
    assert stubdom.read("/local/domain/8/x") == b"v"


def test_guest_cannot_touch_special_node_perms(guest: Caller, dom0: Caller) -> None:
    assert guest.error(Op.SET_PERMS, "@introduceDomain", "n5") == "EACCES"
    dom0.set_perms("@introduceDomain", "n0", "r5")


def test_rm_needs_write_access_and_rm_of_missing_needs_its_parent(
    guest: Caller, dom0: Caller
) -> None:
    dom0.write("/local/domain/5/fixed", "")
    dom0.set_perms("/local/domain/5/fixed", "n0", "r5")
    assert guest.error(Op.RM, "fixed") == "EACCES"
    guest.ok(Op.RM, "gone")  # missing, parent exists
    assert guest.error(Op.RM, "gone/deeper") == "ENOENT"
