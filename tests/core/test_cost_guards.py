"""Regression guards on cost, counted in work done (function calls), not in seconds.

A write must not cost more because its node has many siblings; creating a
domain in a transaction neither, and its commit must save no old versions
(each would copy the parent's child list). sys.setprofile counts every Python
and C function call made while handling the requests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial

import pytest

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.protocol.ops import Op
from xenstore.store import Node


def calls(action: Callable[[], object]) -> int:
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return count


def server_with_siblings(siblings: int) -> tuple[Server, Caller]:
    server = Server()
    for i in range(siblings):
        server.store.write(f"/local/domain/{i}", b"", None)
    return server, Caller(server)


def create_domain(dom0: Caller) -> None:
    tx = dom0.start()
    for key in ("name", "memory/target", "device/vif/0/state", "control/shutdown"):
        dom0.write(f"/local/domain/77/{key}", "v", tx=tx)
    dom0.end(tx)
    dom0.ok(Op.RM, "/local/domain/77")


def test_a_write_costs_the_same_whatever_the_number_of_siblings() -> None:
    costs = []
    for siblings in (10, 10_000):
        _, dom0 = server_with_siblings(siblings)
        # Once before counting, so that both rounds start alike (paths known valid).
        dom0.write("/local/domain/5/name", "warm-up")
        dom0.write("/local/domain/new-one", "warm-up")
        dom0.ok(Op.RM, "/local/domain/new-one")
        dom0.ok(Op.DIRECTORY, "/local/domain/5")
        costs.append((
            calls(partial(dom0.write, "/local/domain/5/name", "vm")),  # an existing node
            calls(partial(dom0.write, "/local/domain/new-one", "x")),  # a new sibling
            calls(partial(dom0.ok, Op.RM, "/local/domain/new-one")),  # removing it
            calls(partial(dom0.ok, Op.DIRECTORY, "/local/domain/5")),
        ))
    assert costs[0] == costs[1]


def test_a_transaction_creating_a_domain_costs_the_same_in_a_big_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copies = []
    original = Node.copy
    monkeypatch.setattr(Node, "copy", lambda node: copies.append(node) or original(node))
    costs = []
    for siblings in (10, 10_000):
        server, dom0 = server_with_siblings(siblings)
        create_domain(dom0)  # warm-up
        costs.append(calls(partial(create_domain, dom0)))
        # No old version was saved (a copy of /local/domain's child list): the
        # transaction's own snapshot closed before its replay, no other is open.
        assert copies == []
        assert server.store.history == {}
    assert costs[0] == costs[1]
