"""A guest that gives its nodes away to dodge its nodes quota.

As cxenstored, only a privileged domain may change a node's owner: a guest's
SET_PERMS naming another owner is refused with EPERM, in or out of a
transaction, so the nodes it made stay on its account. Nodes it creates where
another domain lets it write are its own too.
"""

from __future__ import annotations

import pytest

from tests.hostile.harness import (
    LIVENESS,
    guest_host,
    guest_socket,
    owned_nodes,
    probe,
    wait_for_log,
)
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op


def test_a_guest_cannot_give_its_nodes_away() -> None:
    with guest_host("--write-rate", "0") as host:
        guest = Client(guest_socket(host, 5), timeout=10)
        host.dom0.request(Op.SET_QUOTA, join("5", "nodes", "10"))
        for i in range(9):  # 10 with its home
            guest.write(f"n{i}", "")
        for owner in ("n6", "n0"):
            for i in range(9):
                with pytest.raises(errors.EPERM):
                    guest.set_perms(f"n{i}", [owner, "r5"])
            with guest.transaction() as t, pytest.raises(errors.EPERM):
                t.set_perms("n0", [owner])
        # Another domain lets it write: what it creates there is still its own.
        host.dom0.write("/shared", "")
        host.dom0.set_perms("/shared", ["n0", "b5"])
        with pytest.raises(errors.ENOSPC):
            guest.write("/shared/mine", "")
        with pytest.raises(errors.ENOSPC):
            guest.write("n9", "")
        wait_for_log(host.daemon, r"domain 5: nodes quota hit at /local/domain/5/n9")
        assert host.dom0.get_perms("/local/domain/5/n0") == ["n5", "r0"]
        assert owned_nodes(host.dom0, 5) == 10
        assert probe(host.daemon.socket_path) < LIVENESS
        # Freed room is used where it is allowed, and owned there.
        guest.rm("n8")
        guest.write("/shared/mine", "")
        assert host.dom0.get_perms("/shared/mine") == ["n5", "b5"]
        assert owned_nodes(host.dom0, 5) == 10
        guest.close()
