"""Regression tests for what the fuzzers (fuzz/) found: one test per finding."""

from __future__ import annotations

import pytest

from tests.core.harness import Caller
from xenstore.daemon import invariants
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Log
from xenstore.protocol.ops import Op


@pytest.mark.parametrize("keep_orphans", [False, True])
def test_release_of_a_domain_that_owns_the_root_keeps_the_tree(keep_orphans: bool) -> None:
    """Finding 1: dom0 gave ``/`` to a guest; releasing the guest removed the whole
    tree, root included, then failed with an internal error (KeyError '/').

    Its test also showed that with keep_orphans the nodes handed to dom0 kept
    the released domain's own ACL entries (``b1`` here), so a later domain 1
    would have inherited its rights; they are now revoked as everywhere else.
    """
    server = Server(Config(keep_orphans=keep_orphans))
    dom0 = Caller(server)
    dom0.write("/kept", "dom0's")
    dom0.ok(Op.INTRODUCE, "1", "4096", "7")
    dom0.set_perms("/", "r1", "w2", "b1")
    guest = Caller(server, 1, privileged=False)
    guest.write("/mine", "guest's")
    dom0.ok(Op.RELEASE, "1")
    assert not [e for e in dom0.effects if isinstance(e, Log) and "internal" in e.message]
    assert invariants.problems(server) == []
    # The root stays, handed back to dom0 with the same default access and
    # without the released domain's entries; dom0's nodes stay too.
    assert dom0.get_perms("/") == ["r0", "w2"]
    assert dom0.read("/kept") == b"dom0's"
    assert dom0.read("/tool/xenstored") == b""
    # The guest's own node goes (or, with keep_orphans, becomes dom0's).
    if keep_orphans:
        assert dom0.get_perms("/mine") == ["r0", "w2"]
    else:
        assert dom0.error(Op.READ, "/mine") == "ENOENT"
